/**
 * End to end: the model.onnx a run exports (real server and worker processes, scripts/run-local.ts)
 * gives, in ONNX Runtime, the test-set accuracy and loss the run reported — with batch norm
 * (resnet18 on the real Fashion-MNIST files of Debian's dataset-fashion-mnist, whose running
 * statistics the server gets from the worker at Finish) and with two workers (mlp, synthetic data,
 * sync: both evaluate the final parameters). ONNX's own checker accepts the file.
 */
import t from "tap";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as ort from "onnxruntime-node";
import { createLogger } from "../../common/src/log.ts";
import { loadDataset, type DatasetConfig } from "../../worker/src/data/load-dataset.ts";
import { referencePython } from "../lib/python.ts";
import { runLocal as runJob } from "./helpers/run-local.ts";

const FASHION_MNIST = "/usr/share/datasets/fashion-mnist";

/** A job whose data and results stay under `dir`. */
function runLocal(env: Record<string, string>, dir: string) {
  return runJob({ DATA_DIR: `${dir}/data`, ACCURACY_TARGET: "0", ...env }, `${dir}/run`);
}

/** Accuracy and mean cross-entropy of model.onnx over the test split the workers evaluated on. */
async function evaluateExported(file: string, config: DatasetConfig): Promise<{ accuracy: number; loss: number; predictedClasses: number }> {
  const data = await loadDataset(config, createLogger("test", "error"));
  const session = await ort.InferenceSession.create(file);
  try {
    const { x, y, count } = data.test;
    const out = await session.run({ input: new ort.Tensor("float32", x, [count, ...data.inputShape]) });
    const logits = out.logits!.data as Float32Array;
    let correct = 0;
    let loss = 0;
    const predicted = new Set<number>();
    for (let i = 0; i < count; i++) {
      const row = logits.subarray(i * data.classes, (i + 1) * data.classes);
      const max = Math.max(...row);
      predicted.add(row.indexOf(max));
      if (row.indexOf(max) === y[i]) correct++;
      loss += Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0)) + max - row[y[i]!]!;
    }
    return { accuracy: correct / count, loss: loss / count, predictedClasses: predicted.size };
  } finally {
    await session.release();
  }
}

function onnxChecker(file: string): string {
  const r = spawnSync(referencePython(), ["-c", "import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True); print('ok')", file], { encoding: "utf8" });
  return (r.stdout + r.stderr).trim();
}

t.test("resnet18 on Fashion-MNIST, one worker: model.onnx gives the reported accuracy and loss", async (t) => {
  const dir = t.testdir();
  const job = { DATASET: "fashion-mnist", DATASET_URL: FASHION_MNIST, TRAIN_EXAMPLES: "640", TEST_EXAMPLES: "300", SEED: "11" } as const;
  const r = await runLocal({ ...job, WORKERS: "1", MODE: "sync", EPOCHS: "1", MODEL: "resnet18", LEARNING_RATE: "0.05", EXPORT_URI: `${dir}/model` }, dir);
  t.equal(r.code, 0, "run-local exits 0");
  if (r.code !== 0) t.comment(r.output.slice(-3000));
  t.match(r.output, /exported the model as an ONNX inference graph \([\d.]+ MB\) to .*model\.onnx/, "the server says where model.onnx is");
  const reported = r.workers[0]!;
  const exported = await evaluateExported(`${dir}/model/model.onnx`, { ...job, SEED: 11, TRAIN_EXAMPLES: 640, TEST_EXAMPLES: 300, DATA_DIR: `${dir}/data` });
  t.equal(exported.accuracy, reported.final_test_accuracy, `the accuracy the worker reported (${exported.accuracy})`);
  t.ok(Math.abs(exported.loss - reported.final_test_loss) <= 1e-4 * reported.final_test_loss, `the loss it reported (${exported.loss} vs ${reported.final_test_loss})`);
  t.ok(exported.predictedClasses > 1, `a trained model, not a constant (${exported.predictedClasses} classes predicted)`);
  const description = JSON.parse(readFileSync(`${dir}/model/model.json`, "utf8")) as { state_from_workers: string; tensors: { role: string }[] };
  t.equal(description.state_from_workers, "1", "the worker's batch-norm statistics are in it");
  t.equal(description.tensors.filter((x) => x.role === "state").length, 2 * 20, "mean and variance of resnet18's 20 batch norms");
  t.equal(onnxChecker(`${dir}/model/model.onnx`), "ok", "ONNX's checker accepts it");
});

t.test("mlp, two workers in sync: model.onnx gives what both workers reported", async (t) => {
  const dir = t.testdir();
  const r = await runLocal({ WORKERS: "2", MODE: "sync", EPOCHS: "3", MODEL: "mlp", TRAIN_EXAMPLES: "16000", TEST_EXAMPLES: "1000", SEED: "5", EXPORT_URI: `${dir}/model` }, dir);
  t.equal(r.code, 0, "run-local exits 0");
  if (r.code !== 0) t.comment(r.output.slice(-3000));
  t.equal(r.workers.length, 2);
  const exported = await evaluateExported(`${dir}/model/model.onnx`, { DATASET: "synthetic", SEED: 5, TRAIN_EXAMPLES: 16000, TEST_EXAMPLES: 1000, DATA_DIR: `${dir}/data` });
  for (const [i, w] of r.workers.entries()) {
    t.equal(exported.accuracy, w.final_test_accuracy, `worker ${i}'s accuracy (${exported.accuracy})`);
    t.ok(Math.abs(exported.loss - w.final_test_loss) <= 1e-4 * w.final_test_loss, `worker ${i}'s loss (${exported.loss} vs ${w.final_test_loss})`);
  }
  t.ok(exported.accuracy > 0.5, `trained (${exported.accuracy})`);
});
