/**
 * Per-worker training throughput of each model on this machine: times Trainer.gradients() (forward,
 * backward, gradients copied out — everything a worker's step does except the network) at the
 * model's default batch size, on random input of the dataset's shape, and prints a table plus one
 * BENCH_JSON line. Also extrapolates the time per epoch of each dataset for W workers:
 * (train examples / W) / samples per second.
 *
 *   node scripts/model-throughput.ts                      # every model, wasm backend
 *   MODELS=cnn BENCH_SECONDS=20 TF_BACKEND=cpu node scripts/model-throughput.ts
 */
import { initBackend, type BackendName } from "../worker/src/model/backend.ts";
import { MODEL_DEFAULTS } from "../worker/src/model/defaults.ts";
import { createModel, type ModelName } from "../worker/src/model/models.ts";
import { Trainer } from "../worker/src/model/trainer.ts";
import { Random } from "../worker/src/data/random.ts";

const CASES: { model: ModelName; dataset: string; inputShape: number[]; classes: number; trainExamples: number }[] = [
  { model: "mlp", dataset: "synthetic", inputShape: [32], classes: 10, trainExamples: 16_000 },
  { model: "mlp", dataset: "mnist", inputShape: [28, 28, 1], classes: 10, trainExamples: 60_000 },
  { model: "cnn", dataset: "mnist", inputShape: [28, 28, 1], classes: 10, trainExamples: 60_000 },
  { model: "cnn", dataset: "cifar10", inputShape: [32, 32, 3], classes: 10, trainExamples: 50_000 },
  { model: "resnet18", dataset: "cifar10", inputShape: [32, 32, 3], classes: 10, trainExamples: 50_000 },
  { model: "resnet18", dataset: "cifar100", inputShape: [32, 32, 3], classes: 100, trainExamples: 50_000 },
];

const seconds = Number(process.env.BENCH_SECONDS ?? 15);
const only = process.env.MODELS?.split(",");
const backend = await initBackend((process.env.TF_BACKEND ?? "wasm") as BackendName);
const results = [];
for (const c of CASES.filter((c) => !only || only.includes(c.model))) {
  const batchSize = Number(process.env.BATCH_SIZE ?? MODEL_DEFAULTS[c.model].batchSize);
  const trainer = new Trainer(createModel(c.model, { inputShape: c.inputShape, classes: c.classes, seed: 1 }));
  const features = c.inputShape.reduce((a, b) => a * b, 1);
  const r = new Random(1);
  const x = Float32Array.from({ length: batchSize * features }, () => r.normal());
  const y = Int32Array.from({ length: batchSize }, () => r.nextInt(c.classes));
  trainer.gradients(x, y, batchSize); // warm-up: first-call compilation and allocation
  let steps = 0;
  const started = performance.now();
  // At least 3 steps, and at least `seconds` of work.
  while (steps < 3 || performance.now() - started < seconds * 1000) {
    trainer.gradients(x, y, batchSize);
    steps++;
  }
  const elapsed = (performance.now() - started) / 1000;
  const samplesPerSecond = (steps * batchSize) / elapsed;
  const epochSeconds = (workers: number) => c.trainExamples / workers / samplesPerSecond;
  const row = {
    model: c.model,
    dataset: c.dataset,
    batch_size: batchSize,
    parameters: trainer.parameterSpecs().reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0),
    steps,
    seconds: elapsed,
    step_ms: (elapsed * 1000) / steps,
    samples_per_s: samplesPerSecond,
    epoch_s_1_worker: epochSeconds(1),
    epoch_s_4_workers: epochSeconds(4),
    epoch_s_16_workers: epochSeconds(16),
  };
  results.push(row);
  trainer.dispose();
  const fmt = (s: number) => (s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(0)} s`);
  console.log(
    `${c.model.padEnd(9)} ${c.dataset.padEnd(9)} batch ${String(batchSize).padStart(3)}  ${row.step_ms.toFixed(0).padStart(6)} ms/step  ` +
      `${samplesPerSecond.toFixed(1).padStart(7)} samples/s  epoch: ${fmt(epochSeconds(1))} (1 worker), ${fmt(epochSeconds(4))} (4), ${fmt(epochSeconds(16))} (16)`,
  );
}
console.log(`BENCH_JSON: ${JSON.stringify({ backend, node: process.version, results })}`);
