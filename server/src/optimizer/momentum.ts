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
  readonly #settings: Readonly<{ momentum: number; nesterov: boolean; weightDecay: number }>;
  readonly #velocity = new StateBuffers("velocity");

  constructor(settings: { momentum: number; nesterov: boolean; weightDecay: number }) {
    this.#settings = { ...settings };
    this.name = settings.nesterov ? "nesterov" : "momentum";
  }

  plan(key: string, param: Float32Array, grads: readonly GradientSummand[], lr: number, _step: number, gradScale = 1): StepJob {
    const velocity = this.#velocity.get(key, param.length);
    return { kind: "momentum", param, grads, velocity, options: { lr, scale: gradScale, ...this.#settings } };
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
