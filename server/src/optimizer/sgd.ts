import type { GradientSummand } from "@distributed-ps/common/kernels/simd.ts";
import type { Optimizer } from "./optimizer.ts";
import type { StepJob } from "./step-job.ts";

/** Plain SGD: p ← p − lr·(g + wd·p). */
export class Sgd implements Optimizer {
  readonly name = "sgd";
  readonly #weightDecay: number;

  constructor(options: { weightDecay: number }) {
    this.#weightDecay = options.weightDecay;
  }

  plan(_key: string, param: Float32Array, grads: readonly GradientSummand[], lr: number, _step: number, gradScale = 1): StepJob {
    return { kind: "sgd", param, grads, lr, scale: gradScale, weightDecay: this.#weightDecay };
  }

  state(): Map<string, Float32Array> {
    return new Map();
  }

  loadState(): void {}
}
