import { sgdStep, type GradientSummand } from "@distributed-ps/common/kernels/simd.ts";
import type { Optimizer } from "./optimizer.ts";

/** Plain SGD: p ← p − lr·(g + wd·p). */
export class Sgd implements Optimizer {
  readonly name = "sgd";
  readonly #weightDecay: number;

  constructor(options: { weightDecay: number }) {
    this.#weightDecay = options.weightDecay;
  }

  apply(_key: string, param: Float32Array, grads: readonly GradientSummand[], lr: number, _step: number, gradScale = 1): void {
    sgdStep(param, grads, lr, gradScale, this.#weightDecay);
  }

  state(): Map<string, Float32Array> {
    return new Map();
  }

  loadState(): void {}
}
