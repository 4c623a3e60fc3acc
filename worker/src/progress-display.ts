/**
 * The worker's progress bar, when its stderr is a terminal: one row with the epoch, the batch, the
 * parameter version and an ETA, kept below the log lines. Piped output (run-local, tests, ECS)
 * gets no bar and keeps the plain periodic lines.
 */
import { EtaEstimator, formatDuration, ProgressBoard } from "@distributed-ps/common/progress.ts";

export interface StepProgress {
  /** Epoch, counted from 0. */
  epoch: number;
  epochs: number;
  /** Batches of this epoch done. */
  batch: number;
  batches: number;
  version: number;
}

const board = process.stderr.isTTY ? new ProgressBoard(process.stderr) : undefined;
const eta = new EtaEstimator();

/** Log sink for createLogger: through the board on a terminal, else the default (undefined). */
export const logSink = board === undefined ? undefined : (line: string) => board.log(line);

export function showProgress(p: StepProgress): void {
  if (board === undefined) return;
  const fraction = (p.epoch + (p.batches === 0 ? 1 : p.batch / p.batches)) / p.epochs;
  board.set(0, {
    label: "training",
    fraction,
    detail: `epoch ${p.epoch + 1}/${p.epochs} batch ${p.batch}/${p.batches} · version ${p.version} · ETA ${formatDuration(eta.update(fraction))}`,
  });
}

/** Leaves the bar where it is; what is printed next goes below it. */
export function finishProgress(): void {
  board?.finish();
}
