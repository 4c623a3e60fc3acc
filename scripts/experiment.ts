/**
 * `make experiment`: runs a matrix of local training jobs (modes x worker counts) with
 * scripts/run-local.ts, one after another, and writes one results JSON per run plus charts comparing
 * them: test accuracy, test loss and training loss over time, throughput, final accuracy and wall
 * time per mode and worker count. The local version of the old system's comparison table.
 *
 * Settings (environment):
 *   EXPERIMENT_MODES    comma-separated SERVER_MODEs (default "sync,async")
 *   EXPERIMENT_WORKERS  comma-separated worker counts (default "2,4")
 *   EPOCHS              per run (default 3)
 *   RESULTS_DIR         output directory (default results/experiment-<timestamp>)
 *   ACCURACY_TARGET     passed to each run (default 0: an experiment measures, it does not gate)
 *   EXPERIMENT_REFERENCE  "pytorch": also train the same job (mlp or linear on MNIST/Fashion-MNIST)
 *                       in one PyTorch process (scripts/pytorch/train_reference.py, Debian's
 *                       python3-torch), on the same charts; "none" (default)
 *   TTA_TARGET          a test accuracy: report each run's wall time to reach it (TTA_JSON line,
 *                       time-to-accuracy.png). `make accuracy-race` sets all of these.
 * Everything else (DATASET, MODEL, BATCH_SIZE, OPTIMIZER, LEARNING_RATE, TRAIN_EXAMPLES, ...) passes
 * through to every run. With MODEL set, unset BATCH_SIZE, OPTIMIZER and LEARNING_RATE default to
 * the model's recommended values (worker/src/model/defaults.ts).
 *
 * Output: RESULTS_DIR/<mode>-<n>w.json (one per run), experiment.json (all of them), *.png charts,
 * and runs/<mode>-<n>w/ (each run's process logs and summary.json).
 */
import { spawn } from "node:child_process";
import { createWriteStream, readdirSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { ConfigError, intVar, parseEnv, stringVar } from "../common/src/env.ts";
import { MODEL_DEFAULTS } from "../worker/src/model/defaults.ts";
import { isModelName } from "../worker/src/model/models.ts";
import { barChart, lineChart, writePng, type Point } from "./lib/charts.ts";
import { referencePython } from "./lib/python.ts";
import { extractRecords, type LogLine, type RunRecords } from "./lib/run-logs.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const listOf = <T extends z.ZodType>(item: T, accepts: string, fallback: string) =>
  stringVar(accepts, fallback).transform((text, ctx) => {
    const values = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
    const parsed = values.map((v) => item.safeParse(v));
    if (values.length === 0 || parsed.some((p) => !p.success)) {
      ctx.addIssue({ code: "custom", message: `expected ${accepts}` });
      return z.NEVER;
    }
    return parsed.map((p) => p.data as z.output<T>);
  });

const settingsSchema = z.object({
  EXPERIMENT_MODES: listOf(z.enum(["sync", "async", "ssp"]), "a comma-separated list of sync, async, ssp", "sync,async"),
  EXPERIMENT_WORKERS: listOf(z.coerce.number().int().min(1).max(64), "a comma-separated list of worker counts (1-64)", "2,4"),
  EPOCHS: intVar({ min: 1, max: 10_000, default: 3 }),
  RESULTS_DIR: stringVar("a directory path", join(root, "results", `experiment-${new Date().toISOString().replace(/[:.]/g, "-")}`)),
  ACCURACY_TARGET: stringVar("a number from 0 to 1", "0"),
  EXPERIMENT_REFERENCE: z.enum(["none", "pytorch"]).default("none"),
  TTA_TARGET: z.coerce.number().min(0).max(1).optional(),
});

let settings: z.output<typeof settingsSchema>;
try {
  settings = parseEnv(settingsSchema);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`experiment: ${err.message}\n`);
  process.exit(2);
}

/** The per-model defaults, for variables the user left unset. */
function modelDefaults(): Record<string, string> {
  const model = process.env.MODEL?.trim().toLowerCase();
  if (!model || !isModelName(model)) return {};
  const d = MODEL_DEFAULTS[model];
  const out: Record<string, string> = {};
  if (!process.env.BATCH_SIZE) out.BATCH_SIZE = String(d.batchSize);
  if (!process.env.OPTIMIZER) out.OPTIMIZER = d.optimizer;
  if (!process.env.LEARNING_RATE) out.LEARNING_RATE = String(d.learningRate);
  return out;
}

interface RunOutcome {
  label: string;
  mode: string;
  workers: number;
  exitCode: number;
  runDir: string;
}

/** One run-local job; its output goes to run-local.out in its run directory. */
function runOne(mode: string, workers: number, env: Record<string, string>): Promise<RunOutcome> {
  const label = `${mode}-${workers}w`;
  const runDir = join(settings.RESULTS_DIR, "runs", label);
  return mkdir(runDir, { recursive: true }).then(
    () =>
      new Promise((res) => {
        const child = spawn(process.execPath, [join(root, "scripts", "run-local.ts")], {
          cwd: root,
          env: { ...process.env, ...env, MODE: mode, WORKERS: String(workers), RESULTS_DIR: runDir, DASHBOARD_PORT: "0" },
          stdio: ["ignore", "pipe", "pipe"],
        });
        const out = createWriteStream(join(runDir, "run-local.out"));
        child.stdout.pipe(out);
        child.stderr.pipe(out);
        // Keep the terminal informative without the interleaved per-process output.
        let tail = "";
        child.stdout.on("data", (d: Buffer) => {
          tail = (tail + d.toString()).slice(-4000);
        });
        child.once("exit", (code) => {
          const last = /test-local: mode .*$/m.exec(tail)?.[0];
          if (last) console.log(`  ${last}`);
          res({ label, mode, workers, exitCode: code ?? 1, runDir });
        });
      }),
  );
}

function runLines(dir: string): LogLine[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".log"))
    .flatMap((f) => readFileSync(join(dir, f), "utf8").split("\n").map((text) => ({ time: undefined, source: f, text })));
}

/** Seconds since `start` (ms), or undefined. */
const since = (time: number | undefined, start: number) => (time === undefined ? undefined : (time - start) / 1000);

/** When the run started: its earliest timestamped log line (text "2026-...Z ..." or JSON "time"). */
function startTime(lines: readonly LogLine[]): number {
  let start = Infinity;
  for (const { text } of lines) {
    const m = /^(\d{4}-\d\d-\d\dT[\d:.]+Z) /.exec(text) ?? /"time":"([^"]+)"/.exec(text);
    const t = m ? Date.parse(m[1]!) : NaN;
    if (t < start) start = t;
  }
  return start;
}

/** Everything one run's results JSON holds; times are seconds since the run started (start-up included). */
function summarise(run: RunOutcome, records: RunRecords, start: number, env: Record<string, string>) {
  const mean = (xs: number[]) => (xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length);
  const finals = records.workers.map((w) => Number(w.final_test_accuracy)).filter(Number.isFinite);
  // Per epoch: the mean over workers of their evaluation, at the time the last of them finished it.
  const byEpoch = new Map<number, { t: number[]; acc: number[]; loss: number[] }>();
  for (const e of records.evaluations) {
    const slot = byEpoch.get(e.epoch) ?? { t: [], acc: [], loss: [] };
    slot.t.push(since(e.time, start) ?? NaN);
    slot.acc.push(e.test_accuracy);
    slot.loss.push(e.test_loss);
    byEpoch.set(e.epoch, slot);
  }
  const epochs = [...byEpoch.entries()].sort((a, b) => a[0] - b[0]).map(([epoch, s]) => ({
    epoch,
    t_s: Math.max(...s.t),
    test_accuracy: mean(s.acc),
    test_loss: mean(s.loss),
    workers_reporting: s.acc.length,
  }));
  return {
    label: run.label,
    mode: run.mode,
    workers: run.workers,
    dataset: process.env.DATASET ?? "synthetic",
    model: process.env.MODEL ?? "mlp",
    epochs: settings.EPOCHS,
    settings: env,
    exit_code: run.exitCode,
    wall_time_s: Number(records.server?.wall_time_s ?? Math.max(0, ...records.workers.map((w) => Number(w.wall_time_s) || 0))),
    final_test_accuracy_mean: mean(finals),
    final_test_accuracy_min: finals.length > 0 ? Math.min(...finals) : null,
    total_samples_per_s: records.workers.reduce((a, w) => a + (Number(w.samples_per_s) || 0), 0),
    per_worker_samples_per_s: records.workers.map((w) => Number(w.samples_per_s) || 0),
    per_epoch: epochs,
    train_loss: records.loss.map((p) => ({ t_s: since(p.time, start), worker: p.worker, epoch: p.epoch, loss: p.loss, samples_per_s: p.samples_per_s })),
    server: records.server ?? null,
    worker_metrics: records.workers,
    run_dir: relative(settings.RESULTS_DIR, run.runDir),
  };
}

type RunResult = ReturnType<typeof summarise>;

/** A PyTorch run of the same job: its evaluations after each epoch, in seconds since it was started. */
interface ReferenceRun {
  label: string;
  torch: string;
  threads: number;
  wall_time_s: number;
  per_epoch: { epoch: number; t_s: number; test_accuracy: number; test_loss: number }[];
  exit_code: number;
}

/** Trains the job in one PyTorch process; undefined (and why, on the console) when it cannot. */
async function runReference(): Promise<ReferenceRun | undefined> {
  const dataset = process.env.DATASET ?? "synthetic";
  const model = process.env.MODEL ?? "mlp";
  const data = process.env.DATASET_URL?.replace(/^file:\/\//, "");
  if (!["mnist", "fashion-mnist"].includes(dataset) || !["mlp", "linear"].includes(model) || data === undefined || /^[a-z]+:\/\//.test(data)) {
    console.log("experiment: the PyTorch reference trains mlp or linear on mnist or fashion-mnist from a local DATASET_URL; skipped");
    return undefined;
  }
  const args = [
    join(root, "scripts", "pytorch", "train_reference.py"),
    `--data=${data}`,
    `--dataset=${dataset}`,
    `--model=${model}`,
    `--epochs=${settings.EPOCHS}`,
    `--batch-size=${process.env.BATCH_SIZE ?? "32"}`,
    `--learning-rate=${process.env.LEARNING_RATE ?? "0.1"}`,
    `--threads=1`,
  ];
  const started = Date.now();
  return new Promise((res) => {
    const child = spawn(referencePython(), args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.once("error", (e) => {
      console.log(`experiment: no PyTorch reference (${e.message})`);
      res(undefined);
    });
    child.once("exit", (code) => {
      type Line = { torch?: string; threads?: number; epoch?: number; time_ms?: number; test_accuracy?: number; test_loss?: number };
      const lines = out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Line);
      const head = lines.find((l) => l.torch !== undefined);
      if (code !== 0 || head === undefined) {
        console.log(`experiment: the PyTorch reference failed (exit ${code}): ${err.trim().split("\n").slice(-2).join(" ")}`);
        res(undefined);
        return;
      }
      const per_epoch = lines.filter((l) => l.epoch !== undefined).map((l) => ({ epoch: l.epoch!, t_s: (l.time_ms! - started) / 1000, test_accuracy: l.test_accuracy!, test_loss: l.test_loss! }));
      res({ label: "pytorch-1p", torch: head.torch!, threads: head.threads!, wall_time_s: (Date.now() - started) / 1000, per_epoch, exit_code: 0 });
    });
  });
}

/** Seconds from the start of a run (start-up included) to its first evaluation at or above `target`; null if never. */
function timeToAccuracy(perEpoch: readonly { t_s: number; test_accuracy: number | null }[], target: number): number | null {
  const hit = perEpoch.find((e) => e.test_accuracy !== null && e.test_accuracy >= target && Number.isFinite(e.t_s));
  return hit === undefined ? null : Math.round(hit.t_s * 100) / 100;
}

async function charts(results: readonly RunResult[], reference: ReferenceRun | undefined, tta: Record<string, number | null> | undefined): Promise<string[]> {
  const what = `${results[0]?.dataset ?? "?"} / ${results[0]?.model ?? "?"}, ${settings.EPOCHS} epoch${settings.EPOCHS === 1 ? "" : "s"}`;
  const written: string[] = [];
  const write = async (name: string, spec: Parameters<typeof writePng>[1]) => {
    await writePng(join(settings.RESULTS_DIR, name), spec);
    written.push(name);
  };
  type Evaluation = { t_s: number; test_accuracy: number | null; test_loss: number | null };
  const series: { label: string; per_epoch: Evaluation[] }[] = [...results, ...(reference === undefined ? [] : [reference])];
  const curve = (pick: (e: Evaluation) => number | null): Point[] =>
    series.flatMap((r) => r.per_epoch.filter((e) => Number.isFinite(e.t_s) && pick(e) !== null).map((e) => ({ series: r.label, x: e.t_s, y: pick(e)! })));
  const against = reference === undefined ? "" : `; ${reference.label}: PyTorch ${reference.torch}, one process, ${reference.threads} thread`;
  await write("test-accuracy.png", lineChart({ title: "Test accuracy over time", subtitle: `${what}; mean over workers after each epoch${against}`, xTitle: "seconds since the run started (start-up included)", yTitle: "test accuracy", yFormat: ".1%", points: curve((e) => e.test_accuracy) }));
  await write("test-loss.png", lineChart({ title: "Test loss over time", subtitle: `${what}; mean over workers after each epoch${against}`, xTitle: "seconds since the run started (start-up included)", yTitle: "test loss (nats)", points: curve((e) => e.test_loss) }));
  if (tta !== undefined) {
    const reached = Object.entries(tta).filter((e): e is [string, number] => e[1] !== null);
    await write("time-to-accuracy.png", barChart({
      title: `Time to ${(settings.TTA_TARGET! * 100).toFixed(0)}% test accuracy`,
      subtitle: `${what}; wall time from the start of the run, start-up included${reached.length < Object.keys(tta).length ? "; runs that never reached it are left out" : ""}`,
      xTitle: "run",
      yTitle: "seconds",
      yFormat: ",.1f",
      bars: reached.map(([label, seconds]) => ({ category: label, group: label.startsWith("pytorch") ? "PyTorch" : "this project", value: seconds })),
    }));
  }
  // Training loss: every progress report of every worker, smoothed over one report per worker.
  const trainLoss = results.flatMap((r) => {
    const pts = r.train_loss.filter((p) => p.t_s !== undefined).sort((a, b) => a.t_s! - b.t_s!);
    const k = Math.max(1, r.workers);
    const out: Point[] = [];
    for (let i = 0; i + k <= pts.length; i += k) {
      const group = pts.slice(i, i + k);
      out.push({ series: r.label, x: group[group.length - 1]!.t_s!, y: group.reduce((a, p) => a + p.loss, 0) / k });
    }
    return out;
  });
  if (trainLoss.length > 0) await write("train-loss.png", lineChart({ title: "Training loss over time", subtitle: `${what}; progress reports averaged over workers`, xTitle: "seconds since the run started", yTitle: "training loss (nats)", points: trainLoss }));
  const bars = (value: (r: RunResult) => number | null) =>
    results.filter((r) => value(r) !== null).map((r) => ({ category: `${r.workers} worker${r.workers === 1 ? "" : "s"}`, group: r.mode, value: value(r)! }));
  await write("throughput.png", barChart({ title: "Training throughput", subtitle: `${what}; samples per second, all workers together`, xTitle: "workers", yTitle: "samples / s", yFormat: ",.0f", bars: bars((r) => r.total_samples_per_s) }));
  await write("final-accuracy.png", barChart({ title: "Final test accuracy", subtitle: `${what}; lowest over workers`, xTitle: "workers", yTitle: "test accuracy", yFormat: ".0%", bars: bars((r) => r.final_test_accuracy_min) }));
  await write("wall-time.png", barChart({ title: "Time to train", subtitle: `${what}; whole run, start-up included`, xTitle: "workers", yTitle: "seconds", yFormat: ",.0f", bars: bars((r) => r.wall_time_s) }));
  return written;
}

async function main(): Promise<number> {
  await mkdir(settings.RESULTS_DIR, { recursive: true });
  const env = { EPOCHS: String(settings.EPOCHS), ACCURACY_TARGET: settings.ACCURACY_TARGET, PROGRESS_INTERVAL_MS: process.env.PROGRESS_INTERVAL_MS ?? "1000", ...modelDefaults() };
  const matrix = settings.EXPERIMENT_MODES.flatMap((mode) => settings.EXPERIMENT_WORKERS.map((workers) => ({ mode, workers })));
  console.log(`experiment: ${matrix.length} runs (${settings.EXPERIMENT_MODES.join(", ")} x ${settings.EXPERIMENT_WORKERS.join(", ")} workers), ` +
    `${process.env.DATASET ?? "synthetic"} / ${process.env.MODEL ?? "mlp"}, ${settings.EPOCHS} epochs; results in ${settings.RESULTS_DIR}`);
  const results: RunResult[] = [];
  for (const [i, { mode, workers }] of matrix.entries()) {
    console.log(`experiment: run ${i + 1}/${matrix.length}: ${mode}, ${workers} workers`);
    const run = await runOne(mode, workers, env);
    const lines = runLines(run.runDir);
    const result = summarise(run, extractRecords(lines), startTime(lines), env);
    results.push(result);
    await writeFile(join(settings.RESULTS_DIR, `${run.label}.json`), `${JSON.stringify(result, null, 2)}\n`);
    if (run.exitCode !== 0) console.log(`experiment: run ${run.label} exited with ${run.exitCode}; see ${join(run.runDir, "run-local.out")}`);
  }
  const reference = settings.EXPERIMENT_REFERENCE === "pytorch" ? await runReference() : undefined;
  const target = settings.TTA_TARGET;
  const tta =
    target === undefined
      ? undefined
      : Object.fromEntries([...results.map((r) => [r.label, timeToAccuracy(r.per_epoch, target)] as const), ...(reference ? [[reference.label, timeToAccuracy(reference.per_epoch, target)] as const] : [])]);
  const written = await charts(results, reference, tta);
  const table = results.map((r) => ({ run: r.label, exit_code: r.exit_code, final_test_accuracy_min: r.final_test_accuracy_min, total_samples_per_s: r.total_samples_per_s, wall_time_s: r.wall_time_s }));
  await writeFile(
    join(settings.RESULTS_DIR, "experiment.json"),
    `${JSON.stringify({ generated_at: new Date().toISOString(), settings: { ...settings, ...env }, summary: table, runs: results.map((r) => `${r.label}.json`), reference: reference ?? null, time_to_accuracy: tta ?? null, charts: written }, null, 2)}\n`,
  );

  console.log("");
  console.log("run          final acc (min)  samples/s  wall time");
  for (const r of table) {
    const acc = r.final_test_accuracy_min === null ? "–" : `${(r.final_test_accuracy_min * 100).toFixed(2)}%`;
    console.log(`${r.run.padEnd(12)} ${acc.padStart(15)}  ${r.total_samples_per_s.toFixed(0).padStart(9)}  ${r.wall_time_s.toFixed(1).padStart(8)} s${r.exit_code === 0 ? "" : `  (exit ${r.exit_code})`}`);
  }
  if (reference !== undefined) {
    const last = reference.per_epoch.at(-1);
    console.log(`${reference.label.padEnd(12)} ${last === undefined ? "–".padStart(15) : `${(last.test_accuracy * 100).toFixed(2)}%`.padStart(15)}  ${"".padStart(9)}  ${reference.wall_time_s.toFixed(1).padStart(8)} s  (PyTorch ${reference.torch})`);
  }
  if (tta !== undefined) {
    console.log(`time to ${(target! * 100).toFixed(1)}%: ${Object.entries(tta).map(([label, s]) => `${label} ${s === null ? "never" : `${s.toFixed(1)} s`}`).join(", ")}`);
    console.log(`TTA_JSON: ${JSON.stringify({ target, seconds: tta })}`);
  }
  console.log(`experiment: wrote ${results.length} run results, experiment.json and ${written.join(", ")} to ${settings.RESULTS_DIR}`);
  return results.every((r) => r.exit_code === 0) ? 0 : 1;
}

process.exit(await main());
