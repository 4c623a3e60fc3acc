/**
 * A worker's compute per training step, for each model with each engine, against PyTorch measured in
 * the same run: forward, backward and every gradient copied out (everything a worker's step does
 * but the network), at the model's default batch size, on random input of the dataset's shape.
 *
 * The onnxruntime engine and PyTorch are timed with one thread and with every core, in alternating
 * rounds (engine, PyTorch, engine, ...; the median of the rounds' medians), so that a busy shared
 * machine slows both alike; tfjs (single-threaded wasm) once. PyTorch runs the same architectures
 * (scripts/pytorch/model_throughput.py) when `python3 -c "import torch"` works (Debian:
 * apt-get install python3-torch); otherwise the ratios are left out and the script says so.
 *
 * Then the peak memory (RSS) of a process that builds ResNet-18 and trains one batch of 32, per
 * engine and for PyTorch, each in a fresh process.
 *
 *   node scripts/model-throughput.ts
 *   MODELS=cnn,resnet18 ROUNDS=5 ROUND_SECONDS=3 ENGINES=onnxruntime node scripts/model-throughput.ts
 *
 * Ends with one line: THROUGHPUT_JSON: {"results":[{"model","dataset","batch_size","engine",
 * "threads","ms_per_step","pytorch_ms_per_step","ratio_to_pytorch"}...],"memory":[...],...}
 */
import { spawn, spawnSync } from "node:child_process";
import os from "node:os";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { referencePython } from "./lib/python.ts";
import { Random } from "../worker/src/data/random.ts";
import { createEngine, type EngineChoice } from "../worker/src/model/create-engine.ts";
import { MODEL_DEFAULTS } from "../worker/src/model/defaults.ts";
import type { TrainingEngine } from "../worker/src/model/engine.ts";
import type { ModelName } from "../worker/src/model/models.ts";

interface Case { model: ModelName; dataset: string; inputShape: number[]; classes: number }

const CASES: Case[] = [
  { model: "mlp", dataset: "mnist", inputShape: [28, 28, 1], classes: 10 },
  { model: "cnn", dataset: "mnist", inputShape: [28, 28, 1], classes: 10 },
  { model: "cnn", dataset: "cifar10", inputShape: [32, 32, 3], classes: 10 },
  { model: "resnet18", dataset: "cifar10", inputShape: [32, 32, 3], classes: 10 },
];
const PYTORCH_SCRIPT = fileURLToPath(new URL("./pytorch/model_throughput.py", import.meta.url));

// A child process of this script measuring one engine's peak memory (see the end of the file).
if (process.argv[2] === "--memory") {
  const [engine, model, batchSize] = [process.argv[3] as EngineChoice, process.argv[4] as ModelName, Number(process.argv[5])];
  const c = CASES.find((x) => x.model === model)!;
  const trainer = await build(c, engine, os.availableParallelism());
  const { x, y } = randomBatch(c, batchSize);
  await trainer.gradients(x, y, batchSize);
  await trainer.gradients(x, y, batchSize);
  console.log(JSON.stringify({ peak_rss_mb: process.resourceUsage().maxRSS / 1024 }));
  process.exit(0);
}

const rounds = Number(process.env.ROUNDS ?? 3);
const roundSeconds = Number(process.env.ROUND_SECONDS ?? 2);
const only = process.env.MODELS?.split(",");
const engines = (process.env.ENGINES ?? "onnxruntime,tfjs").split(",") as EngineChoice[];
const cores = os.availableParallelism();
const threadCounts = [...new Set([1, cores])];
const pytorch = await startPytorch();
console.log(pytorch.version === undefined ? `PyTorch: not available (${pytorch.why}); ratios left out` : `PyTorch ${pytorch.version}; ${cores} cores`);

interface Row { model: string; dataset: string; batch_size: number; engine: string; threads: number; ms_per_step: number; pytorch_ms_per_step: number | null; ratio_to_pytorch: number | null }
const results: Row[] = [];
for (const c of CASES.filter((c) => !only || only.includes(c.model))) {
  const batchSize = MODEL_DEFAULTS[c.model].batchSize;
  const { x, y } = randomBatch(c, batchSize);
  const pytorchRequest = { model: c.model, input_shape: c.inputShape, classes: c.classes, batch_size: batchSize };
  for (const engine of engines) {
    // tfjs's wasm backend is single-threaded in Node: one row, against PyTorch on one thread.
    for (const threads of engine === "tfjs" ? [1] : threadCounts) {
      const trainer = await build(c, engine, threads);
      await trainer.gradients(x, y, batchSize); // warm-up: session and kernel set-up
      const first = await timeSteps(trainer, x, y, batchSize, 1);
      const steps = Math.max(2, Math.min(50, Math.round((roundSeconds * 1000) / first[0]!)));
      const ours: number[] = [];
      const theirs: number[] = [];
      // tfjs is slow enough (seconds per ResNet step) that one round says enough.
      for (let round = 0; round < (engine === "tfjs" ? 1 : rounds); round++) {
        ours.push(median(await timeSteps(trainer, x, y, batchSize, steps)));
        if (pytorch.version !== undefined) theirs.push(median(await pytorch.time({ ...pytorchRequest, threads, steps })));
      }
      trainer.dispose();
      const ms = median(ours);
      const reference = theirs.length > 0 ? median(theirs) : null;
      const row = { model: c.model, dataset: c.dataset, batch_size: batchSize, engine, threads, ms_per_step: ms, pytorch_ms_per_step: reference, ratio_to_pytorch: reference === null ? null : ms / reference };
      results.push(row);
      console.log(
        `${c.model.padEnd(9)} ${c.dataset.padEnd(8)} batch ${String(batchSize).padStart(3)}  ${engine.padEnd(11)} ${threads} thread${threads === 1 ? " " : "s"}` +
          `  ${ms.toFixed(1).padStart(8)} ms/step` +
          (reference === null ? "" : `  PyTorch ${reference.toFixed(1).padStart(8)} ms  ratio ${row.ratio_to_pytorch!.toFixed(2)}×`),
      );
    }
  }
}
pytorch.close();

// Peak memory of one ResNet-18 step at batch 32, each in a fresh process.
const memory: { engine: string; model: string; batch_size: number; peak_rss_mb: number }[] = [];
if (!only || only.includes("resnet18")) {
  for (const engine of [...engines, "pytorch"]) {
    const child = engine === "pytorch"
      ? spawnSync(referencePython(), [PYTORCH_SCRIPT, "--memory", JSON.stringify({ model: "resnet18", input_shape: [32, 32, 3], classes: 10, batch_size: 32, threads: cores, steps: 1 })], { encoding: "utf8" })
      : spawnSync(process.execPath, [fileURLToPath(import.meta.url), "--memory", engine, "resnet18", "32"], { encoding: "utf8" });
    const line = child.stdout?.trim().split("\n").at(-1);
    if (child.status !== 0 || line === undefined) {
      console.log(`memory (${engine}): not measured (${(child.stderr ?? String(child.error)).trim().split("\n").at(-1)})`);
      continue;
    }
    const { peak_rss_mb } = JSON.parse(line) as { peak_rss_mb: number };
    memory.push({ engine, model: "resnet18", batch_size: 32, peak_rss_mb });
    console.log(`memory: resnet18 batch 32, ${engine.padEnd(11)} peak RSS ${peak_rss_mb.toFixed(0)} MB`);
  }
}

console.log(`THROUGHPUT_JSON: ${JSON.stringify({ results, memory, cores, node: process.version, pytorch: pytorch.version ?? null })}`);

async function build(c: Case, engine: EngineChoice, threads: number): Promise<TrainingEngine> {
  const { trainer } = await createEngine(c.model, { inputShape: c.inputShape, classes: c.classes, seed: 1 },
    { engine, threads, tfBackend: "wasm" }, (m) => console.warn(m));
  return trainer;
}

function randomBatch(c: Case, n: number) {
  const r = new Random(1);
  const features = c.inputShape.reduce((a, b) => a * b, 1);
  return { x: Float32Array.from({ length: n * features }, () => r.normal()), y: Int32Array.from({ length: n }, () => r.nextInt(c.classes)) };
}

async function timeSteps(trainer: TrainingEngine, x: Float32Array, y: Int32Array, n: number, steps: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const started = performance.now();
    await trainer.gradients(x, y, n);
    times.push(performance.now() - started);
  }
  return times;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** A PyTorch process that answers timing requests, one JSON line each way. */
async function startPytorch(): Promise<{ version?: string; why?: string; time: (request: object) => Promise<number[]>; close: () => void }> {
  // PASSIVE: PyTorch's OpenMP threads sleep between requests instead of spinning for a while, which
  // would take the cores from the engine timed next (ONNX Runtime's threads do not spin either).
  const child = spawn(referencePython(), [PYTORCH_SCRIPT], { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, OMP_WAIT_POLICY: "PASSIVE" } });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<string | undefined> => (await lines.next()).value as string | undefined;
  const spawnFailed = new Promise<undefined>((resolve) => child.once("error", () => resolve(undefined)));
  const hello = await Promise.race([next(), spawnFailed]);
  if (hello === undefined) {
    child.kill();
    return { why: stderr.trim().split("\n").at(-1) || "python3 did not start", time: async () => [], close: () => {} };
  }
  return {
    version: (JSON.parse(hello) as { torch: string }).torch,
    time: async (request) => {
      child.stdin.write(`${JSON.stringify(request)}\n`);
      const answer = await next();
      if (answer === undefined) throw new Error(`the PyTorch process ended: ${stderr.trim().split("\n").at(-1)}`);
      return (JSON.parse(answer) as { ms: number[] }).ms;
    },
    close: () => child.stdin.end(),
  };
}
