/**
 * `make results`: gathers a run's results into one results.json and draws its charts (PNG).
 *
 *   node scripts/results.ts [--run runs/<timestamp>] [--out DIR]
 *   node scripts/results.ts --cloudwatch [--log-group-prefix /ecs/distributed-ps-dev] [--since 24h] [--region r] [--out DIR]
 *
 * Locally it reads the process logs of a `make test-local` run (the newest under runs/ by default).
 * With --cloudwatch it reads the ECS log groups through the AWS SDK (FilterLogEvents; the caller
 * needs logs:FilterLogEvents) and keeps the latest run in the window. Either way it collects every
 * process's final METRICS_JSON record and the workers' progress and evaluation lines, writes
 * results.json, and draws loss.png, accuracy.png and throughput.png next to it.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { barChart, lineChart, writePng } from "./lib/charts.ts";
import { DEFAULT_LOG_GROUP_PREFIX, filterLogEvents, logsClient, parseSince } from "./lib/cloudwatch-logs.ts";
import { extractRecords, latestRun, type LogLine, type RunRecords } from "./lib/run-logs.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const USAGE = `usage: node scripts/results.ts [--run runs/<timestamp>] [--out DIR]
       node scripts/results.ts --cloudwatch [--log-group-prefix ${DEFAULT_LOG_GROUP_PREFIX}] [--since 24h] [--region r] [--endpoint url] [--out DIR]`;

const { values: args } = parseArgs({
  options: {
    run: { type: "string" },
    out: { type: "string" },
    cloudwatch: { type: "boolean", default: false },
    "log-group-prefix": { type: "string", default: process.env.LOG_GROUP_PREFIX ?? DEFAULT_LOG_GROUP_PREFIX },
    since: { type: "string", default: "24h" },
    region: { type: "string", default: process.env.AWS_REGION },
    endpoint: { type: "string", default: process.env.CLOUDWATCH_LOGS_ENDPOINT },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}

function fail(message: string): never {
  process.stderr.write(`results: ${message}\n`);
  process.exit(1);
}

/** The newest run directory under runs/. */
function newestRun(): string {
  const dir = join(root, "runs");
  const runs = existsSync(dir) ? readdirSync(dir).map((d) => join(dir, d)).filter((d) => statSync(d).isDirectory()) : [];
  if (runs.length === 0) fail(`no runs under ${dir}: run \`make test-local\` first, or pass --run DIR or --cloudwatch`);
  return runs.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]!;
}

function localLines(dir: string): LogLine[] {
  const logs = readdirSync(dir).filter((f) => f.endsWith(".log"));
  if (logs.length === 0) fail(`no .log files in ${dir}`);
  return logs.flatMap((f) => readFileSync(join(dir, f), "utf8").split("\n").map((text) => ({ time: undefined, source: f, text })));
}

async function cloudwatchLines(): Promise<{ lines: LogLine[]; groups: string[] }> {
  const client = logsClient({ region: args.region, endpoint: args.endpoint });
  const prefix = args["log-group-prefix"];
  const groups = [`${prefix}-parameter-server`, `${prefix}-worker`];
  const startTime = Date.now() - parseSince(args.since);
  const lines: LogLine[] = [];
  for (const logGroupName of groups) {
    // Only the lines results are made of: summaries, progress and evaluations.
    const events = await filterLogEvents(client, { logGroupName, filterPattern: '?"METRICS_JSON" ?"samples/s" ?"test accuracy"', startTime });
    for (const e of events) lines.push({ time: e.timestamp, source: `${logGroupName}/${e.logStreamName}`, text: e.message });
  }
  return { lines: lines.sort((a, b) => (a.time ?? 0) - (b.time ?? 0)), groups };
}

function summarize(r: RunRecords) {
  const acc = r.workers.map((w) => Number(w.final_test_accuracy)).filter((a) => Number.isFinite(a));
  const mean = (xs: number[]) => (xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length);
  return {
    mode: (r.server?.mode ?? r.workers[0]?.mode ?? null) as string | null,
    workers: r.workers.length,
    expected_workers: (r.server?.total_workers ?? r.workers[0]?.total_workers ?? null) as number | null,
    mean_final_test_accuracy: mean(acc),
    min_final_test_accuracy: acc.length === 0 ? null : Math.min(...acc),
    total_samples_per_s: r.workers.reduce((a, w) => a + (Number(w.samples_per_s) || 0), 0),
    wall_time_s: (r.server?.wall_time_s ?? Math.max(0, ...r.workers.map((w) => Number(w.wall_time_s) || 0))) as number,
    run_complete: (r.server?.run_complete ?? null) as boolean | null,
  };
}

async function drawCharts(r: RunRecords, out: string, label: string): Promise<string[]> {
  const written: string[] = [];
  const name = (w: number) => `worker ${w}`;
  if (r.loss.length > 0) {
    await writePng(
      join(out, "loss.png"),
      lineChart({ title: "Training loss", subtitle: label, xTitle: "step (parameter version)", yTitle: "training loss", points: r.loss.map((p) => ({ series: name(p.worker), x: p.version, y: p.loss })) }),
    );
    written.push("loss.png");
  }
  if (r.evaluations.length > 0) {
    await writePng(
      join(out, "accuracy.png"),
      lineChart({ title: "Test accuracy after each epoch", subtitle: label, xTitle: "epoch", xInteger: true, yTitle: "test accuracy", yFormat: ".0%", points: r.evaluations.map((p) => ({ series: name(p.worker), x: p.epoch, y: p.test_accuracy })) }),
    );
    written.push("accuracy.png");
  }
  if (r.workers.length > 0) {
    await writePng(
      join(out, "throughput.png"),
      barChart({
        title: "Throughput per worker",
        subtitle: label,
        xTitle: "worker",
        yTitle: "samples / s (whole run)",
        yFormat: ",.0f",
        bars: r.workers.map((w) => ({ category: name(Number(w.worker_id)), value: Number(w.samples_per_s) || 0 })),
      }),
    );
    written.push("throughput.png");
  }
  return written;
}

async function main(): Promise<number> {
  let lines: LogLine[];
  let source: Record<string, unknown>;
  let out: string;
  if (args.cloudwatch) {
    const cw = await cloudwatchLines();
    lines = latestRun(cw.lines);
    source = { kind: "cloudwatch", log_groups: cw.groups, since: args.since, region: args.region ?? null, events: lines.length };
    out = resolve(args.out ?? join(root, "results", `cloudwatch-${new Date().toISOString().replace(/[:.]/g, "-")}`));
  } else {
    const dir = resolve(args.run ?? newestRun());
    if (!existsSync(dir)) fail(`${dir} does not exist`);
    lines = localLines(dir);
    source = { kind: "local", run_dir: dir };
    out = resolve(args.out ?? join(dir, "results"));
  }
  const records = extractRecords(lines);
  if (records.workers.length === 0 && records.server === undefined) fail("found no METRICS_JSON lines: did the run finish?");
  const summary = summarize(records);
  await mkdir(out, { recursive: true });
  const label = `${summary.mode ?? "?"} mode, ${summary.workers} worker${summary.workers === 1 ? "" : "s"} · ${basename(String(source.run_dir ?? "cloudwatch"))}`;
  const charts = await drawCharts(records, out, label);
  const results = { generated_at: new Date().toISOString(), source, summary, server: records.server ?? null, workers: records.workers, curves: { loss: records.loss, evaluations: records.evaluations }, charts };
  await writeFile(join(out, "results.json"), `${JSON.stringify(results, null, 2)}\n`);

  const pct = (v: number | null) => (v === null ? "–" : `${(v * 100).toFixed(2)}%`);
  console.log(
    `results: ${summary.mode ?? "?"} mode, ${summary.workers}${summary.expected_workers ? `/${summary.expected_workers}` : ""} workers: ` +
      `mean final test accuracy ${pct(summary.mean_final_test_accuracy)} (min ${pct(summary.min_final_test_accuracy)}), ` +
      `${summary.total_samples_per_s.toFixed(0)} samples/s in total, wall time ${Number(summary.wall_time_s).toFixed(1)} s`,
  );
  console.log(`results: wrote ${join(out, "results.json")}${charts.length > 0 ? ` and ${charts.join(", ")}` : ""}`);
  return 0;
}

process.exit(await main());
