/**
 * The quality of a run's final parameters: the exported `model.safetensors` loaded into the
 * worker's own model (worker/src/model) and evaluated on the run's synthetic test set, built the
 * way a worker builds it (worker/src/data/load-dataset.ts), in this process.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createLogger } from "../../../common/src/log.ts";
import { decodeSafetensors } from "../../../common/src/safetensors.ts";
import { loadDataset } from "../../../worker/src/data/load-dataset.ts";
import { initBackend } from "../../../worker/src/model/backend.ts";
import { createModel } from "../../../worker/src/model/models.ts";
import { Trainer } from "../../../worker/src/model/trainer.ts";
import { JOB } from "./job.ts";

let backend: Promise<unknown> | undefined;

export interface Quality {
  accuracy: number;
  /** The best accuracy any classifier can expect on this test set (the synthetic task's Bayes rate). */
  bayesAccuracy: number;
  /** The exported model's version (its metadata). */
  version: number;
}

/** Evaluates `<exportDir>/model.safetensors` on the test set of data seed `dataSeed`; throws if unreadable. */
export async function evaluateExport(exportDir: string, dataSeed: number): Promise<Quality> {
  backend ??= initBackend("wasm", () => {});
  await backend;
  const bytes = new Uint8Array(await readFile(join(exportDir, "model.safetensors")));
  const exported = decodeSafetensors(bytes);
  const log = createLogger("chaos", "warn");
  const data = await loadDataset(
    { DATASET: JOB.dataset, SEED: dataSeed, TRAIN_EXAMPLES: JOB.trainExamples, TEST_EXAMPLES: JOB.testExamples, DATA_DIR: "" },
    log,
  );
  const trainer = new Trainer(createModel(JOB.model, { inputShape: data.inputShape, classes: data.classes, seed: dataSeed }));
  try {
    trainer.setParameters(exported.tensors);
    const { accuracy } = trainer.evaluate(data.test.x, data.test.y, data.test.count);
    if (data.bayesAccuracy === undefined) throw new Error(`the ${JOB.dataset} dataset has no Bayes-optimal accuracy`);
    return { accuracy, bayesAccuracy: data.bayesAccuracy, version: Number(exported.metadata.version) };
  } finally {
    trainer.dispose();
  }
}
