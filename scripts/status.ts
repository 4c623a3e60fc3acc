/**
 * `make status`: the live state of a run — version, mode, every worker slot, recent metrics.
 *
 *   node scripts/status.ts [--address host:port] [--watch] [--interval 2] [--json]
 *   node scripts/status.ts --cloudwatch [--log-group-prefix /ecs/distributed-ps-dev] [--region eu-west-1]
 *
 * By default it calls GetStatus over gRPC at ADDRESS (localhost:8000), with AUTH_TOKEN when set,
 * which works locally and against AWS through a port forward (see docs/running.md). With --cloudwatch it needs no network path
 * to the server at all: it reads the newest CloudWatch EMF lines the server writes to its log group
 * every STATUS_INTERVAL_MS (METRICS_EMF=true, as the ECS task definition sets it).
 */
import { parseArgs } from "node:util";
import { SlotState, type GetStatusResponse } from "../common/src/gen/paramserver/v1/parameter_server_pb.js";
import { connectToServer } from "../common/src/wire/client.ts";
import { DEFAULT_LOG_GROUP_PREFIX, filterLogEvents, logsClient, parseSince } from "./lib/cloudwatch-logs.ts";

const USAGE = `usage: node scripts/status.ts [--address host:port] [--watch] [--interval seconds] [--json]
       node scripts/status.ts --cloudwatch [--log-group-prefix ${DEFAULT_LOG_GROUP_PREFIX}] [--region r] [--since 15m] [--endpoint url]`;

const { values: args } = parseArgs({
  options: {
    address: { type: "string", default: process.env.ADDRESS ?? "localhost:8000" },
    watch: { type: "boolean", default: false },
    interval: { type: "string", default: "2" },
    json: { type: "boolean", default: false },
    cloudwatch: { type: "boolean", default: false },
    "log-group-prefix": { type: "string", default: process.env.LOG_GROUP_PREFIX ?? DEFAULT_LOG_GROUP_PREFIX },
    region: { type: "string", default: process.env.AWS_REGION },
    endpoint: { type: "string", default: process.env.CLOUDWATCH_LOGS_ENDPOINT },
    since: { type: "string", default: "15m" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}

const STATE_NAMES: Record<number, string> = { [SlotState.FREE]: "free", [SlotState.ACTIVE]: "active", [SlotState.FINISHED]: "finished", [SlotState.RETIRED]: "retired" };
const MODE_NAMES = ["?", "sync", "async", "ssp"];

function clock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 3600)}:${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

/** Rows of cells → aligned text (numbers right-aligned). */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => /^[-\d.,%]+$|^–$/.test(r[i] ?? "")));
  const fmt = (r: string[]) => r.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [fmt(header), ...rows.map(fmt)].join("\n");
}

const pct = (v: number | undefined) => (v === undefined || v < 0 ? "–" : `${(v * 100).toFixed(2)}%`);
const num = (v: number | undefined, d = 4) => (v === undefined || v < 0 ? "–" : v.toFixed(d));

function formatStatus(s: GetStatusResponse, address: string): string {
  const slots = s.slots;
  const count = (st: SlotState) => slots.filter((x) => x.state === st).length;
  const retiring = slots.filter((x) => x.retiring).length;
  const phase = s.runComplete ? "COMPLETE" : s.initialized ? "TRAINING" : "WAITING FOR WORKERS";
  const lines = [
    `distributed-ps at ${address} — ${phase}, up ${clock(s.uptimeSeconds)}`,
    `mode ${MODE_NAMES[s.config?.mode ?? 0] ?? "?"} · version ${s.version} · ${s.elementCount.toLocaleString("en-US")} parameters · ` +
      `workers ${count(SlotState.ACTIVE) - retiring} active, ${count(SlotState.FINISHED)} finished, ${count(SlotState.FREE)} free of ${s.config?.totalWorkers ?? slots.length}` +
      (retiring > 0 ? `, ${retiring} retiring` : "") +
      (count(SlotState.RETIRED) > 0 ? `, ${count(SlotState.RETIRED)} retired` : "") +
      ` · stale gradients refused ${s.staleGradientsRejected}`,
    "",
    table(
      ["slot", "state", "worker", "last seen", "steps", "restarts", "position", "train loss", "test acc", "samples/s"],
      slots.map((x) => {
        const m = x.latestMetrics;
        return [
          String(x.slot),
          x.retiring ? "retiring" : x.abandoned ? "abandoned" : (STATE_NAMES[x.state] ?? "?"),
          x.workerLabel || "–",
          x.registrations === 0 ? "–" : `${(x.lastSeenMsAgo / 1000).toFixed(1)}s`,
          String(x.pushes),
          String(Math.max(0, x.registrations - 1)),
          x.registrations === 0 ? "–" : `epoch ${(x.position?.epoch ?? 0) + 1} batch ${x.position?.batch ?? 0}`,
          num(m?.trainLoss),
          pct(m?.testAccuracy),
          m === undefined ? "–" : m.samplesPerSecond.toFixed(0),
        ];
      }),
    ),
  ];
  const epochs = s.epochs.slice(-6);
  if (epochs.length > 0) {
    lines.push("", `data: ${epochs.map((e) => `epoch ${e.epoch + 1} ${e.partsComplete}/${e.parts} parts (${e.examples.toLocaleString("en-US")} examples)`).join(" · ")}`);
  }
  return lines.join("\n");
}

async function grpcStatus(): Promise<number> {
  // A server started with AUTH_TOKEN wants it on every call, GetStatus included.
  const client = connectToServer(args.address, { authToken: process.env.AUTH_TOKEN || undefined });
  const intervalMs = Math.max(0.2, Number(args.interval) || 2) * 1000;
  for (;;) {
    let status: GetStatusResponse;
    try {
      status = await client.getStatus({}, { timeoutMs: 10_000 });
    } catch (err) {
      process.stderr.write(`status: cannot reach the parameter server at ${args.address}: ${(err as Error).message}\n`);
      return 1;
    }
    const text = args.json
      ? JSON.stringify(status, (_k, v: unknown) => (typeof v === "bigint" ? Number(v) : v))
      : formatStatus(status, args.address);
    // On a terminal --watch redraws in place; piped, it prints one block per interval.
    if (args.watch && process.stdout.isTTY) process.stdout.write("\x1b[H\x1b[2J");
    process.stdout.write(`${text}\n${args.watch && !process.stdout.isTTY && !args.json ? "\n" : ""}`);
    if (!args.watch || status.runComplete) return 0;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The newest EMF documents (run and per slot) the server wrote to CloudWatch Logs. */
async function cloudwatchStatus(): Promise<number> {
  const client = logsClient({ region: args.region, endpoint: args.endpoint });
  const group = `${args["log-group-prefix"]}-parameter-server`;
  const events = await filterLogEvents(client, {
    logGroupName: group,
    filterPattern: '{ ($.event = "run_metrics") || ($.event = "worker_metrics") }',
    startTime: Date.now() - parseSince(args.since),
  });
  const docs = events.flatMap((e) => {
    try {
      return [JSON.parse(e.message) as Record<string, unknown> & { _aws: { Timestamp: number } }];
    } catch {
      return [];
    }
  });
  const runDoc = docs.filter((d) => d.event === "run_metrics").at(-1);
  if (runDoc === undefined) {
    process.stderr.write(`status: no EMF status lines in ${group} in the last ${args.since} (is METRICS_EMF=true set on the server?)\n`);
    return 1;
  }
  const at = runDoc._aws.Timestamp;
  // Each slot's newest document from the same report (they share the run document's timestamp,
  // give or take the time to write them).
  const bySlot = new Map<string, (typeof docs)[number]>();
  for (const d of docs) if (d.event === "worker_metrics" && Math.abs(d._aws.Timestamp - at) < 2000) bySlot.set(String(d.Slot), d);
  const slots = [...bySlot.values()];
  if (args.json) {
    console.log(JSON.stringify({ run: runDoc, slots }));
    return 0;
  }
  const n = (v: unknown, d = 1) => (typeof v === "number" ? v.toFixed(d) : "–");
  console.log(
    `distributed-ps from ${group} at ${new Date(at).toISOString()} (${Math.round((Date.now() - at) / 1000)} s ago) — ` +
      `${runDoc.run_complete ? "COMPLETE" : "TRAINING"}, mode ${String(runDoc.Mode)}`,
  );
  console.log(
    `version ${String(runDoc.Version)} · workers ${String(runDoc.ActiveWorkers)} active, ${String(runDoc.FinishedWorkers)} finished of ${String(runDoc.total_workers)}` +
      ` · throughput ${n(runDoc.Throughput, 0)} samples/s · step ${n(runDoc.StepTime, 0)} ms · train loss ${n(runDoc.TrainLoss, 4)}` +
      ` · test acc ${n(runDoc.TestAccuracy, 2)}% · staleness ${n(runDoc.MeanStaleness)} (max ${String(runDoc.MaxStaleness)})`,
  );
  console.log("");
  console.log(
    table(
      ["slot", "state", "worker", "steps", "samples/s", "step ms", "staleness", "train loss", "test acc"],
      slots
        .sort((a, b) => Number(a.Slot) - Number(b.Slot))
        .map((d) => [String(d.Slot), String(d.state), String(d.worker_label || "–"), String(d.gradients), n(d.WorkerThroughput, 0), n(d.WorkerStepTime, 0), n(d.WorkerStaleness), n(d.WorkerTrainLoss, 4), d.WorkerTestAccuracy === undefined ? "–" : `${n(d.WorkerTestAccuracy, 2)}%`]),
    ),
  );
  return 0;
}

process.exit(await (args.cloudwatch ? cloudwatchStatus() : grpcStatus()));
