/**
 * The server's periodic progress line (one every STATUS_INTERVAL_MS, not one per request) and its
 * end-of-run summary.
 */
import type { Logger } from "@distributed-ps/common/log.ts";
import type { TrainingRun } from "../run/training-run.ts";

export class StatusReporter {
  readonly #run: TrainingRun;
  readonly #log: Logger;
  readonly #timer: NodeJS.Timeout | undefined;
  #lastVersion = 0;
  #lastAt = Date.now();

  constructor(run: TrainingRun, log: Logger, intervalMs: number) {
    this.#run = run;
    this.#log = log;
    if (intervalMs > 0) {
      this.#timer = setInterval(() => this.report(), intervalMs);
      this.#timer.unref();
    }
  }

  report(): void {
    const run = this.#run;
    if (!run.store.initialized) {
      const active = run.membership.active().length;
      this.#log.info(`waiting for parameters: ${active}/${run.options.workers} workers registered`);
      return;
    }
    const now = Date.now();
    const version = run.store.version;
    const rate = ((version - this.#lastVersion) * 1000) / Math.max(1, now - this.#lastAt);
    this.#lastVersion = version;
    this.#lastAt = now;
    const slots = run.membership.slots;
    const count = (state: string) => slots.filter((s) => s.state === state).length;
    const metrics = slots.map((s) => s.latestMetrics).filter((m) => m !== undefined);
    const loss = meanOfKnown(metrics.map((m) => m.trainLoss));
    const acc = meanOfKnown(metrics.map((m) => m.testAccuracy));
    this.#log.info(
      `version ${version} (${rate.toFixed(1)} updates/s) | workers ${count("active")} active, ${count("finished")} finished, ${count("free")} free` +
        (slots.some((s) => s.retired) ? `, ${slots.filter((s) => s.retired).length} retired` : "") +
        ` | lr ${run.updater.learningRate.toPrecision(3)}` +
        (Number.isNaN(loss) ? "" : ` | train loss ${loss.toFixed(4)}`) +
        (Number.isNaN(acc) ? "" : ` | test acc ${(acc * 100).toFixed(2)}%`) +
        (run.aggregator.staleRejected > 0 ? ` | stale rejected ${run.aggregator.staleRejected}` : ""),
    );
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** The server's METRICS_JSON record. */
  summary(): Record<string, unknown> {
    const run = this.#run;
    const finalAccuracy = meanOfKnown(run.membership.slots.map((s) => s.latestMetrics?.testAccuracy ?? -1));
    return {
      role: "server",
      mode: run.options.mode,
      total_workers: run.membership.workerCount,
      optimizer: run.updater.optimizer.name,
      version: run.store.version,
      updates_applied: run.updater.updatesApplied,
      parameters: run.store.elementCount,
      tensors: run.store.tensorCount,
      stale_gradients_rejected: run.aggregator.staleRejected,
      registrations: run.membership.slots.map((s) => s.registrations),
      gradients_per_slot: run.membership.slots.map((s) => s.pushes),
      retired_slots: run.membership.slots.filter((s) => s.retired).map((s) => s.index),
      // Per epoch: how many parts its data was cut into and the examples in applied gradients.
      epochs: run.plan.summary().map((e) => ({ epoch: e.epoch, parts: e.parts, parts_complete: e.partsComplete, examples: e.examples })),
      run_complete: run.complete,
      wall_time_s: (Date.now() - run.startedAt) / 1000,
      mean_final_test_accuracy: Number.isNaN(finalAccuracy) ? null : finalAccuracy,
    };
  }
}

/**
 * The mean of the values that are known: workers report "not measured" as a negative number (a loss
 * or accuracy of a window with no batch, a test not run), which must not pull an average down.
 * NaN when none is known.
 */
export function meanOfKnown(values: readonly number[]): number {
  const known = values.filter((v) => Number.isFinite(v) && v >= 0);
  return known.length === 0 ? NaN : known.reduce((a, b) => a + b, 0) / known.length;
}
