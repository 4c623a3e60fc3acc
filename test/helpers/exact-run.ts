/**
 * "Every example trained once per epoch, every applied gradient counted once", checked on the
 * server's final METRICS_JSON record, for process tests whose workers are killed, stopped and
 * restarted. The training set's size must split into whole batches however many parts an epoch is
 * cut into (9,600 = 32 × 300 does for 1..6 parts), so that each epoch's examples equal it exactly
 * (a worker drops a part's last partial batch: worker/src/data/partition.ts).
 */
import type { Test } from "tap";

export interface ExactRun {
  epochs: number;
  trainExamples: number;
  batchSize: number;
  mode: "sync" | "async" | "ssp";
}

/** A worker's environment for a run of this shape against `address` (`extra` on top). */
export function workerEnvFor(run: Omit<ExactRun, "mode">, address: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PARAMETER_SERVER_ADDRESS: address,
    EPOCHS: String(run.epochs),
    TRAIN_EXAMPLES: String(run.trainExamples),
    BATCH_SIZE: String(run.batchSize),
    TEST_EXAMPLES: "500",
    PROGRESS_INTERVAL_MS: "200",
    ...extra,
  };
}

interface EpochRecord {
  epoch: number;
  parts: number;
  parts_complete: number;
  examples: number;
}

export function assertExactRun(t: Test, summary: Record<string, unknown> | undefined, run: ExactRun): void {
  if (summary === undefined) {
    t.fail("the server printed no METRICS_JSON");
    return;
  }
  t.equal(summary.run_complete, true, "the run is complete");
  const epochs = summary.epochs as EpochRecord[];
  t.same(
    epochs.map((e) => e.epoch),
    Array.from({ length: run.epochs }, (_, i) => i),
    `${run.epochs} epochs were planned`,
  );
  for (const e of epochs) {
    t.equal(e.parts_complete, e.parts, `epoch ${e.epoch + 1}: all ${e.parts} parts trained`);
    t.equal(e.examples, run.trainExamples, `epoch ${e.epoch + 1}: ${run.trainExamples} examples, each counted once`);
  }
  const gradients = (summary.gradients_per_slot as number[]).reduce((a, b) => a + b, 0);
  const expected = (run.epochs * run.trainExamples) / run.batchSize;
  t.equal(gradients, expected, `${expected} gradients applied in all (gradients_per_slot ${JSON.stringify(summary.gradients_per_slot)})`);
  if (run.mode === "sync") t.equal(summary.version, summary.updates_applied, "sync: one version per applied step");
  else t.equal(summary.updates_applied, expected, `${run.mode}: one update per gradient`);
}
