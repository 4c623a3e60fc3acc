/**
 * Turns an aggregated gradient into a parameter update: learning rate from the schedule, optimizer
 * step per tensor, version advanced by the store.
 */
import type { GradientSummand } from "@distributed-ps/common/kernels/simd.ts";
import type { Optimizer } from "../optimizer/optimizer.ts";
import { ParallelStep } from "../optimizer/parallel-step.ts";
import type { Schedule } from "../optimizer/schedule.ts";
import type { ParameterStore } from "../store/parameter-store.ts";

export class Updater {
  readonly store: ParameterStore;
  readonly optimizer: Optimizer;
  readonly #schedule: Schedule;
  readonly #onApplied: (version: number) => void;
  readonly #parallel: ParallelStep;
  /** Updates applied so far; drives the schedule and Adam's bias correction. */
  updatesApplied = 0;

  /** `parallel` runs the steps (default: on this thread only). */
  constructor(
    store: ParameterStore,
    optimizer: Optimizer,
    schedule: Schedule,
    onApplied: (version: number) => void = () => {},
    parallel = new ParallelStep({ helpers: 0 }),
  ) {
    this.store = store;
    this.#parallel = parallel;
    this.optimizer = optimizer;
    this.#schedule = schedule;
    this.#onApplied = onApplied;
  }

  /** Learning rate the next update will use. */
  get learningRate(): number {
    return this.#schedule(this.updatesApplied);
  }

  /**
   * Applies the sum of `gradients` (each one summand per tensor in storage order, summed in the
   * order given) scaled by `scale` — 1/n to average a sum of n — and returns the new version. The
   * optimizer decodes, sums and scales each element as it reads it (one pass over the gradients,
   * not one per summand); the gradients are left as they were.
   */
  apply(gradients: readonly (readonly GradientSummand[])[], scale = 1): number {
    const lr = this.learningRate;
    const step = this.updatesApplied + 1;
    const version = this.store.update((params) => {
      this.#parallel.run(params.map((p, i) => this.optimizer.plan(p.name, p.data, gradients.map((g) => g[i]!), lr, step, scale)));
    });
    this.updatesApplied = step;
    this.#onApplied(version);
    return version;
  }
}
