/**
 * `make bench`: the parameter server's data path against this machine's limits.
 *
 * Byte-moving workers (bench/byte-worker.ts: the real protocol, no model) pull and push a model's
 * worth of tensors through a real server process on loopback; in the same run, raw HTTP/2 between
 * processes moving the same bytes (the transport's ceiling) and memcpy. An end-to-end scaling run
 * adds emulated compute per step. Writes bench/results/<time>.json and charts next to it, prints
 * tables, and ends with one `BENCH_JSON: {...}` line for the target workload (11.2M parameters,
 * fp32 pull, fp16 push, 4 workers, sync), and with the small models (`--small`) one
 * `SMALL_BENCH_JSON: {...}` line of their cases against raw HTTP/2.
 *
 * A benchmark measures; it never fails because a machine is slow. It exits 1 only when a process
 * crashed or a case could not run.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem } from "node:os";
import { join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { http2LimitKey, memcpyLimit, runHttp2LimitMedian, type Http2Limit } from "./lib/limits.ts";
import { MODELS, modelLayout } from "./lib/models.ts";
import { ROOT } from "./lib/processes.ts";
import { epochWindowToMonotonicUs, formatProfile, summarizeProfiles, type ProfileSummary } from "./lib/profile.ts";
import { NODE_FLAGS } from "@distributed-ps/common/node-flags.ts";
import { caseId, runPsCase, type PsCaseSpec } from "./lib/ps-case.ts";
import { isWireDtype, WIRE_BYTES, type WireDtype } from "./lib/rounds.ts";
import {
  casesTable,
  compare,
  compareTable,
  limitsTable,
  ratiosTable,
  scalingOf,
  scalingTable,
  SCHEMA,
  smallModelLine,
  targetLine,
  withLimit,
  writeCharts,
  type BenchResult,
  type CaseReport,
} from "./lib/report.ts";

const USAGE = `usage: node bench/run.ts [options]            (make bench [QUICK=1] [ARGS="..."])

  --quick                 only the target workload (11.2M, fp32 pull, fp16 push, N=4, sync), its
                          single-worker twin, the same against two shards, their HTTP/2 limits
                          and memcpy (under two minutes)
  --small                 only the small models (55k and 1M; N=1 and N=4; sync and async; fp32),
                          where a step is mostly round trip, and their HTTP/2 limits
  --models LIST           ${Object.keys(MODELS).join(",")} (and "tiny" for tests)
  --workers LIST          e.g. 1,2,4,8
  --modes LIST            sync,async,ssp
  --pull LIST             fp32,fp16,bf16 (pull dtypes)
  --push LIST             fp32,fp16,bf16 (push dtypes)
  --shards LIST           server shards (separate processes), e.g. 1,2
                          Any of these six: run their cartesian product (the others default to the
                          target's value). None: a curated matrix. --matrix full: everything.
  --rounds R              measured rounds per worker (default: by model size, 24 for 11.2M;
                          48 with --quick)
  --warmup W              unmeasured rounds first (default 4; a quarter of the measured rounds
                          for models measured over 200 rounds or more, whose rounds take a millisecond)
  --limit-seconds S       length of each raw HTTP/2 measurement (default 3)
  --limit-runs K          raw HTTP/2 measurements per limit, the median one reported (default 3)
  --no-limits             skip memcpy and raw HTTP/2
  --no-one-trip           pull every round, even a model whose parameters fit in the push's answer
                          (the worker's default, which the benchmark follows otherwise)
  --no-scaling            skip the end-to-end scaling run
  --scaling-only          only the scaling run
  --scaling-workers LIST  default 1,2,4,8
  --compute-ms C          emulated compute per step in the scaling run (default 250)
  --compute sleep|busy    sleep (compute elsewhere, as on separate machines) or spin on this CPU
  --batch-size B          samples per step, to turn rounds/s into samples/s (default 128)
  --scaling-rounds R      measured rounds per worker in the scaling run (default 10)
  --server-env K=V,...    extra server environment (e.g. OPTIMIZER=adam,MAX_CHUNK_BYTES=1048576)
  --node-flags="F ..."    node flags of the server and the workers (default: common/src/node-flags.ts;
                          "" runs without them)
  --profile               add one profiled run of the target workload, or of the first of
                          --models/--modes/--pull/--push when given (node --cpu-prof on the
                          server and the first worker), and print the top self-time functions
  --profile-rounds R      measured rounds of that run (default 10)
  --profile-only          only that profiled run
  --profile-workers N     workers in that run (default 4)
  --compare FILE          show the change against an earlier results file
  --to FILE               with --compare: compare two files, run nothing
  --charts FILE           redraw the charts of an earlier results file, run nothing
  --out DIR               where results go (default bench/results)
  --no-chart              skip the PNG charts
  --case-timeout-s S      kill a case after this long (default 900)
  -h, --help`;

const { values: a } = parseArgs({
  options: {
    quick: { type: "boolean", default: process.env.QUICK === "1" },
    small: { type: "boolean", default: process.env.SMALL === "1" },
    models: { type: "string" },
    workers: { type: "string" },
    modes: { type: "string" },
    pull: { type: "string" },
    push: { type: "string" },
    shards: { type: "string" },
    matrix: { type: "string" },
    rounds: { type: "string" },
    warmup: { type: "string" },
    "limit-seconds": { type: "string", default: "3" },
    "limit-runs": { type: "string", default: "3" },
    "no-limits": { type: "boolean", default: false },
    "no-one-trip": { type: "boolean", default: false },
    "no-scaling": { type: "boolean", default: false },
    "scaling-only": { type: "boolean", default: false },
    "scaling-workers": { type: "string", default: "1,2,4,8" },
    "compute-ms": { type: "string", default: "250" },
    compute: { type: "string", default: "sleep" },
    "batch-size": { type: "string", default: "128" },
    "scaling-rounds": { type: "string", default: "10" },
    "server-env": { type: "string", default: "" },
    "node-flags": { type: "string" },
    profile: { type: "boolean", default: false },
    "profile-rounds": { type: "string", default: "10" },
    "profile-only": { type: "boolean", default: false },
    "profile-workers": { type: "string", default: "4" },
    compare: { type: "string" },
    to: { type: "string" },
    charts: { type: "string" },
    out: { type: "string", default: join(ROOT, "bench/results") },
    "no-chart": { type: "boolean", default: false },
    "case-timeout-s": { type: "string", default: "900" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (a.help) {
  console.log(USAGE);
  process.exit(0);
}

function fail(message: string): never {
  console.error(`bench: ${message}\n\n${USAGE}`);
  process.exit(2);
}
const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);
const int = (name: string, s: string, min = 0) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < min) fail(`--${name} must be an integer >= ${min} (got "${s}")`);
  return n;
};
const positive = (name: string, s: string) => {
  const n = Number(s);
  if (!(n > 0)) fail(`--${name} must be a positive number (got "${s}")`);
  return n;
};
const readResult = (file: string) => {
  const r = JSON.parse(readFileSync(file, "utf8")) as BenchResult;
  if (r.schema !== SCHEMA) fail(`${file} is not a benchmark result (schema ${String(r.schema)})`);
  return r;
};

if (a.to !== undefined) {
  if (a.compare === undefined) fail("--to needs --compare FILE");
  console.log(`comparing ${a.compare} (before) with ${a.to} (after)\n`);
  console.log(compareTable(compare(readResult(a.compare), readResult(a.to))));
  process.exit(0);
}
if (a.charts !== undefined) {
  const r = readResult(a.charts);
  for (const p of await writeCharts(r, a.charts.replace(/\.json$/, ""))) console.log(`chart: ${p}`);
  process.exit(0);
}
const previous = a.compare === undefined ? undefined : readResult(a.compare);

// ---- the plan ----

const TARGET = { model: "11.2M", workers: 4, mode: "sync", pull: "fp32", push: "fp16" } as const;
const timeoutMs = positive("case-timeout-s", a["case-timeout-s"]) * 1000;
const serverEnv = Object.fromEntries(
  list(a["server-env"]).map((kv) => {
    const i = kv.indexOf("=");
    if (i < 1) fail(`--server-env takes K=V pairs (got "${kv}")`);
    return [kv.slice(0, i), kv.slice(i + 1)];
  }),
);
const nodeFlags = a["node-flags"] === undefined ? NODE_FLAGS : a["node-flags"].split(/\s+/).filter((f) => f !== "");
if (a.compute !== "sleep" && a.compute !== "busy") fail(`--compute is sleep or busy (got "${a.compute}")`);
const compute = a.compute;

/**
 * Measured rounds per worker: about 24 rounds' worth of 11.2M parameters, at least 6. Quick mode
 * runs one workload, so it affords 48: with 16, a case lasted ~3 s and its rate moved by ±8% from
 * run to run with the start-up of the processes (24.1–26.3 rounds/s in four runs of the same code);
 * with 48, a run takes ~35 s and measures the rate a training run sees.
 */
function roundsFor(model: string): number {
  if (a.rounds !== undefined) return int("rounds", a.rounds, 1);
  if (a.quick) return 48;
  // Small models' rounds take a millisecond or so: enough of them for a few seconds' measurement.
  return Math.max(6, Math.min(2000, Math.round((24 * 11_173_962) / modelLayout(model).params)));
}

/**
 * Unmeasured rounds before a case's measured ones. Four suffice where a round moves megabytes; a
 * small model's round takes about a millisecond, and four of them end before V8 has compiled the
 * call path (docs/performance.md has the figures). A training run takes thousands of steps, so
 * the benchmark measures that steady state.
 */
function warmupFor(rounds: number): number {
  if (a.warmup !== undefined) return int("warmup", a.warmup);
  return rounds >= 200 ? Math.floor(rounds / 4) : 4;
}

/** The small-model cases: per-step cost where the compute is small and the round trip is all. */
function smallCases(): PsCaseSpec[] {
  return ["55k", "1M"].flatMap((model) =>
    ["sync", "async"].flatMap((mode) => [1, 4].map((workers) => spec({ model, workers, mode, pull: "fp32", push: "fp32" }))),
  );
}

function spec(c: { model: string; workers: number; shards?: number; mode: string; pull: string; push: string }, extra: Partial<PsCaseSpec> = {}): PsCaseSpec {
  modelLayout(c.model); // throws for an unknown model
  if (!["sync", "async", "ssp"].includes(c.mode)) fail(`unknown mode "${c.mode}"`);
  if (!isWireDtype(c.pull) || !isWireDtype(c.push)) fail(`unknown dtype in pull ${c.pull} / push ${c.push} (fp32, fp16, bf16)`);
  if (!(c.workers >= 1)) fail(`bad worker count ${c.workers}`);
  const rounds = roundsFor(c.model);
  return {
    model: c.model,
    workers: c.workers,
    shards: c.shards ?? 1,
    mode: c.mode as PsCaseSpec["mode"],
    pull: c.pull as WireDtype,
    push: c.push as WireDtype,
    rounds,
    warmup: warmupFor(rounds),
    computeMs: 0,
    compute,
    oneTrip: !a["no-one-trip"],
    serverEnv,
    nodeFlags,
    timeoutMs,
    ...extra,
  };
}

function byteCases(): PsCaseSpec[] {
  if (a["scaling-only"] || a["profile-only"]) return [];
  if (a.quick) return [spec(TARGET), spec({ ...TARGET, workers: 1 }), spec({ ...TARGET, shards: 2 })];
  if (a.small) return smallCases();
  const given = [a.models, a.workers, a.modes, a.pull, a.push, a.shards].some((v) => v !== undefined);
  if (given || a.matrix === "full") {
    const full = a.matrix === "full";
    const models = list(a.models ?? (full ? Object.keys(MODELS).join(",") : TARGET.model));
    const workers = list(a.workers ?? (full ? "1,2,4,8" : String(TARGET.workers))).map((w) => int("workers", w, 1));
    const modes = list(a.modes ?? (full ? "sync,async" : TARGET.mode));
    const pulls = list(a.pull ?? (full ? "fp32,fp16,bf16" : TARGET.pull));
    const pushes = list(a.push ?? (full ? "fp32,fp16,bf16" : TARGET.push));
    const shards = list(a.shards ?? "1").map((k) => int("shards", k, 1));
    return models.flatMap((model) =>
      shards.flatMap((k) =>
        modes.flatMap((mode) => pulls.flatMap((pull) => pushes.flatMap((push) => workers.map((w) => spec({ model, workers: w, shards: k, mode, pull, push }))))),
      ),
    );
  }
  if (a.matrix !== undefined) fail(`--matrix accepts only "full"`);
  // The curated default: the target at every N, then one axis changed at a time.
  return [
    ...[1, 2, 4, 8].map((workers) => spec({ ...TARGET, workers })),
    spec({ ...TARGET, shards: 2 }),
    spec({ ...TARGET, pull: "fp32", push: "fp32" }),
    spec({ ...TARGET, pull: "fp16", push: "fp16" }),
    spec({ ...TARGET, pull: "bf16", push: "bf16" }),
    spec({ ...TARGET, mode: "async" }),
    spec({ ...TARGET, model: "1M" }),
    spec({ ...TARGET, model: "25M" }),
    spec({ ...TARGET, model: "25M", shards: 2 }),
    ...smallCases(),
  ];
}

function scalingCases(): PsCaseSpec[] {
  if (a.quick || a.small || a["no-scaling"] || a["profile-only"]) return [];
  const computeMs = int("compute-ms", a["compute-ms"]);
  const rounds = int("scaling-rounds", a["scaling-rounds"], 1);
  const base = { model: a.models !== undefined ? list(a.models)[0]! : TARGET.model, mode: TARGET.mode, pull: TARGET.pull, push: TARGET.push };
  return list(a["scaling-workers"]).map((w) => spec({ ...base, workers: int("scaling-workers", w, 1) }, { computeMs, rounds }));
}

const bytes = byteCases();
const scaling = scalingCases();
const limitsOn = !a["no-limits"];
const limitSeconds = positive("limit-seconds", a["limit-seconds"]);
const limitRuns = int("limit-runs", a["limit-runs"], 1);
const batchSize = int("batch-size", a["batch-size"], 1);

// ---- running it ----

const started = new Date();
const stamp = started.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
const outDir = resolve(a.out);
mkdirSync(outDir, { recursive: true });
const base = join(outDir, stamp);
const log = (s: string) => console.log(`bench ${((Date.now() - started.getTime()) / 1000).toFixed(0).padStart(4)}s | ${s}`);

const git = (...args: string[]) => {
  try {
    return execFileSync("git", args, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
};
const machine = {
  cpus: cpus().length,
  cpu_model: cpus()[0]?.model ?? "unknown",
  memory_GiB: Math.round(totalmem() / 2 ** 30),
  kernel: release(),
  node: process.version,
  git_commit: git("rev-parse", "--short", "HEAD"),
  git_dirty: (git("status", "--porcelain", "--untracked-files=no") ?? "") !== "",
  load_average_1m_at_start: Math.round(loadavg()[0]! * 100) / 100,
};
log(
  `${bytes.length} byte-moving case(s), ${scaling.length} scaling case(s), limits ${limitsOn ? "on" : "off"}; ` +
    `${machine.cpus} CPUs (${machine.cpu_model}), node ${machine.node}, commit ${machine.git_commit ?? "?"}${machine.git_dirty ? " (uncommitted changes)" : ""}`,
);

if (machine.load_average_1m_at_start > 0.5) {
  log(`note: the machine is already busy (load average ${machine.load_average_1m_at_start}); figures will be low — see "other load" per case`);
}

const errors: BenchResult["errors"] = [];
const http2: Http2Limit[] = [];
let memcpy: BenchResult["limits"]["memcpy"] = null;
if (limitsOn && (bytes.length > 0 || scaling.length > 0)) {
  const largest = Math.max(...[...bytes, ...scaling].map((c) => modelLayout(c.model).params * WIRE_BYTES[c.pull]));
  memcpy = memcpyLimit(largest);
  log(`memcpy ${(memcpy.bytes / 1e6).toFixed(1)} MB: Buffer.copy ${memcpy.buffer_copy_MB_per_s} MB/s, TypedArray.set ${memcpy.typed_array_set_MB_per_s} MB/s, alloc+copy ${memcpy.alloc_and_copy_MB_per_s} MB/s`);
}

async function limitFor(c: PsCaseSpec): Promise<Http2Limit | undefined> {
  if (!limitsOn) return undefined;
  const params = modelLayout(c.model).params;
  const s = { clients: c.workers, getBytes: params * WIRE_BYTES[c.pull], postBytes: params * WIRE_BYTES[c.push], seconds: limitSeconds, warmup: 2 };
  const key = http2LimitKey(s);
  const known = http2.find((l) => l.key === key);
  if (known) return known;
  try {
    const l = await runHttp2LimitMedian(s, limitRuns);
    http2.push(l);
    const runs = l.runs_rounds_per_s.length > 1 ? ` (median of ${l.runs_rounds_per_s.map((r) => r.toFixed(2)).join(", ")})` : "";
    log(`  raw HTTP/2, ${l.clients} client(s): ${l.rounds_per_s.toFixed(2)} rounds/s${runs}, ${l.MB_per_s.toFixed(0)} MB/s, GET p50 ${l.pull_ms.p50} ms, POST p50 ${l.push_ms.p50} ms`);
    return l;
  } catch (err) {
    errors.push({ id: `raw HTTP/2 ${key}`, message: (err as Error).message });
    log(`  raw HTTP/2 ${key} FAILED: ${(err as Error).message.split("\n")[0]}`);
    return undefined;
  }
}

const cases: CaseReport[] = [];
const all = [...bytes.map((s) => ({ s, kind: "bytes" as const })), ...scaling.map((s) => ({ s, kind: "scaling" as const }))];
for (const [i, { s, kind }] of all.entries()) {
  const id = caseId(s);
  log(`[${i + 1}/${all.length}] ${id}: ${s.rounds} rounds per worker after ${s.warmup} warm-up`);
  try {
    const r = await runPsCase(s);
    const limit = kind === "bytes" ? await limitFor(s) : undefined;
    const report = withLimit(r, kind, limit, memcpy);
    if (kind === "scaling") report.samples_per_s = Math.round(r.rounds_per_s * batchSize * 10) / 10;
    cases.push(report);
    log(
      `  ${r.rounds_per_s.toFixed(2)} rounds/s, ${r.MB_per_s.toFixed(0)} MB/s` +
        (report.ratio.rounds_per_s !== null ? ` (${(report.ratio.rounds_per_s * 100).toFixed(0)}% of raw HTTP/2)` : "") +
        `, pull p50 ${r.pull_ms.p50} ms, push p50 ${r.push_ms.p50} ms, server ${r.server.cpu_cores ?? "?"} cores, peak ${r.server.peak_rss_MB ?? "?"} MB` +
        (kind === "scaling" ? `, ${report.samples_per_s} samples/s` : ""),
    );
  } catch (err) {
    errors.push({ id, message: (err as Error).message });
    log(`  FAILED: ${(err as Error).message.split("\n")[0]}`);
  }
}

let profiles: ProfileSummary[] = [];
if (a.profile || a["profile-only"]) {
  const dir = `${base}-profile`;
  // The target workload, or the first model, mode and dtypes given on the command line.
  const profiled = { model: list(a.models ?? TARGET.model)[0]!, mode: list(a.modes ?? TARGET.mode)[0]!, pull: list(a.pull ?? TARGET.pull)[0]!, push: list(a.push ?? TARGET.push)[0]! };
  const s = spec({ ...profiled, workers: int("profile-workers", a["profile-workers"], 1) }, { rounds: int("profile-rounds", a["profile-rounds"], 1), profileDir: dir, profileWorker: true });
  log(`profiling: ${caseId(s)} with node --cpu-prof, ${s.rounds} rounds (profiled timings are not comparable)`);
  try {
    const r = await runPsCase(s);
    log(`  ${r.rounds_per_s.toFixed(2)} rounds/s, pull p50 ${r.pull_ms.p50} ms, push p50 ${r.push_ms.p50} ms (under the profiler)`);
    profiles = summarizeProfiles(dir, 12, epochWindowToMonotonicUs(r.window_start_ms, r.window_end_ms));
  } catch (err) {
    errors.push({ id: `profile ${caseId(s)}`, message: (err as Error).message });
    log(`  FAILED: ${(err as Error).message.split("\n")[0]}`);
  }
}

// ---- the report ----

const finished = new Date();
const result: BenchResult = {
  schema: SCHEMA,
  started_at: started.toISOString(),
  finished_at: finished.toISOString(),
  duration_s: Math.round((finished.getTime() - started.getTime()) / 100) / 10,
  machine,
  options: { quick: a.quick, warmup: a.warmup === undefined ? "per case" : int("warmup", a.warmup), limit_seconds: limitSeconds, limit_runs: limitRuns, batch_size: batchSize, compute, server_env: serverEnv, node_flags: nodeFlags, argv: process.argv.slice(2) },
  limits: { memcpy, http2 },
  cases,
  scaling: scalingOf(cases, batchSize),
  profiles,
  errors,
  target: null,
};
const jsonFile = `${base}.json`;
const isTarget = (c: CaseReport, workers: number) =>
  c.kind === "bytes" && c.model === TARGET.model && c.mode === TARGET.mode && c.pull_dtype === TARGET.pull && c.push_dtype === TARGET.push && c.workers === workers && c.shards === 1;
// (--small has no 11.2M case: its line is the small-model one.)
const target = cases.find((c) => isTarget(c, TARGET.workers)) ?? (a.small ? undefined : cases.find((c) => c.kind === "bytes"));
const small = smallModelLine(cases);
/** The target's workload (model, mode, dtypes) in the case that `differs` picks. */
const twin = (t: CaseReport, differs: (c: CaseReport) => boolean) =>
  cases.find((c) => c.kind === "bytes" && c.model === t.model && c.mode === t.mode && c.pull_dtype === t.pull_dtype && c.push_dtype === t.push_dtype && differs(c));
const single = target === undefined ? undefined : twin(target, (c) => c.workers === 1 && c.shards === target.shards);
const sharded = target === undefined ? undefined : twin(target, (c) => c.shards > 1 && c.workers === target.workers);
if (target !== undefined) result.target = targetLine(result, target, single, sharded, relative(ROOT, jsonFile));
writeFileSync(jsonFile, `${JSON.stringify(result, null, 1)}\n`);

console.log("");
const byteReports = cases.filter((c) => c.kind === "bytes");
if (byteReports.length > 0) console.log(`${casesTable(byteReports)}\n`);
if (byteReports.some((c) => c.limit !== null)) console.log(`${ratiosTable(byteReports)}\n`);
if (memcpy !== null || http2.length > 0) console.log(`${limitsTable(result.limits)}\n`);
if (result.scaling) {
  console.log(`scaling: ${result.scaling.compute_ms} ms emulated compute (${result.scaling.compute}) per step, batch ${batchSize}, ${result.scaling.model} ${result.scaling.mode}`);
  console.log(`${scalingTable(result.scaling)}\n`);
}
for (const p of profiles) console.log(`${formatProfile(p)}\n`);
if (previous !== undefined) {
  console.log(`change against ${a.compare}:`);
  console.log(`${compareTable(compare(previous, result))}\n`);
}
if (!a["no-chart"]) {
  try {
    for (const p of await writeCharts(result, base)) log(`chart: ${relative(ROOT, p)}`);
  } catch (err) {
    log(`charts could not be drawn: ${(err as Error).message}`);
  }
}
log(`results: ${relative(ROOT, jsonFile)} (${result.duration_s} s)`);
for (const e of errors) console.log(`ERROR ${e.id}: ${e.message}`);
if (small !== null) console.log(`SMALL_BENCH_JSON: ${JSON.stringify(small)}`);
if (result.target !== null) console.log(`BENCH_JSON: ${JSON.stringify(result.target)}`);
process.exit(errors.length > 0 ? 1 : 0);
