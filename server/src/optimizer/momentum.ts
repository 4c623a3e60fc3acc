import type { GradientSummand } from "@distributed-ps/common/kernels/simd.ts";
import { StateBuffers, type Optimizer } from "./optimizer.ts";
import type { StepJob } from "./step-job.ts";

/**
 * SGD with momentum, in PyTorch's formulation (so learning rates carry over from it):
 *   d = g + wd·p;  v ← μ·v + d;  p ← p − lr·v            (classic)
 *                               p ← p − lr·(d + μ·v)      (Nesterov)
 */
export class Momentum implements Optimizer {
  readonly name: string;
  readonly #momentum: number;
  readonly #nesterov: boolean;
  readonly #weightDecay: number;
  readonly #velocity = new StateBuffers("velocity");

  constructor(options: { momentum: number; nesterov: boolean; weightDecay: number }) {
    this.#momentum = options.momentum;
    this.#nesterov = options.nesterov;
    this.#weightDecay = options.weightDecay;
    this.name = options.nesterov ? "nesterov" : "momentum";
  }

  plan(key: string, param: Float32Array, grads: readonly GradientSummand[], lr: number, _step: number, gradScale = 1): StepJob {
    return {
      kind: "momentum",
      param,
      grads,
      velocity: this.#velocity.get(key, param.length),
      options: { lr, scale: gradScale, weightDecay: this.#weightDecay, momentum: this.#momentum, nesterov: this.#nesterov },
    };
  }

  state(): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>();
    this.#velocity.addTo(out);
    return out;
  }

  loadState(state: ReadonlyMap<string, Float32Array>): void {
    this.#velocity.loadFrom(state);
  }
}
