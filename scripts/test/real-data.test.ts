/**
 * Real data in CI: the `make test-local` path (a real server process and real worker processes over
 * loopback gRPC) trains on the real Fashion-MNIST — Debian's dataset-fashion-mnist, which `.ci/run`
 * installs, verified against the catalog's checksums of the content — to a stated test accuracy,
 * with each model kind (`mlp`, `cnn`) and each compute engine the worker has.
 *
 * The targets sit a few points under what the runs reach (measured in the README's table), so a
 * change that breaks learning fails here while run-to-run noise does not.
 */
import t from "tap";
import { runLocal } from "./helpers/run-local.ts";

const FASHION_MNIST = "/usr/share/datasets/fashion-mnist/";

interface Job {
  model: "mlp" | "cnn";
  env: Record<string, string>;
  target: number;
}

const JOBS: Job[] = [
  // The 55k-parameter MLP on all 60,000 images, one epoch.
  { model: "mlp", env: { EPOCHS: "1", BATCH_SIZE: "32", OPTIMIZER: "sgd", LEARNING_RATE: "0.1" }, target: 0.8 },
  // The CNN on a seeded tenth of the data (its step is ~50x the MLP's), two epochs.
  { model: "cnn", env: { EPOCHS: "2", BATCH_SIZE: "64", OPTIMIZER: "momentum", LEARNING_RATE: "0.05", TRAIN_EXAMPLES: "6000", TEST_EXAMPLES: "2000" }, target: 0.8 },
];

for (const engine of ["onnxruntime", "tfjs"]) {
  for (const job of JOBS) {
    t.test(`${job.model} with ${engine}: real Fashion-MNIST, 2 workers, sync, to ${job.target * 100}%`, async (t) => {
      const r = await runLocal(
        { DATASET: "fashion-mnist", DATASET_URL: FASHION_MNIST, MODEL: job.model, WORKER_ENGINE: engine, WORKERS: "2", MODE: "sync", ACCURACY_TARGET: String(job.target), ...job.env },
        t.testdir(),
      );
      t.equal(r.code, 0, "run-local exits 0 (every worker reached the target)");
      if (r.code !== 0) t.comment(r.output.slice(-3000));
      t.ok((r.run?.final_test_accuracy ?? 0) >= job.target, `final test accuracy ${r.run?.final_test_accuracy} in ${r.run?.wall_time_s} s`);
      t.match(r.output, /fashion-mnist from \/usr\/share\/datasets\/fashion-mnist\/: (6000 of )?60000 train/, "the real files, verified (no DATASET_SHA256=skip)");
      t.notMatch(r.output, /NOT verified/, "and not loaded unverified");
      t.match(r.output, new RegExp(`"engine":"${engine}`), `the workers trained with ${engine}`);
    });
  }
}
