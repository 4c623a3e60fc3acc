import type { GradientSummand } from "@distributed-ps/common/kernels/simd.ts";
import { StateBuffers, type Optimizer } from "./optimizer.ts";
import type { StepJob } from "./step-job.ts";

/**
 * Adam (Kingma & Ba) with bias correction, and decoupled weight decay (AdamW: p ← p − lr·wd·p)
 * when weightDecay > 0:
 *   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
 *   p ← p − lr·(m/(1−β1^t)) / (√(v/(1−β2^t)) + ε)
 */
export class Adam implements Optimizer {
  readonly name: string;
  readonly #settings: Readonly<{ beta1: number; beta2: number; epsilon: number; weightDecay: number }>;
  readonly #m = new StateBuffers("m");
  readonly #v = new StateBuffers("v");

  constructor(settings: { beta1: number; beta2: number; epsilon: number; weightDecay: number }) {
    this.#settings = { ...settings };
    this.name = settings.weightDecay > 0 ? "adamw" : "adam";
  }

  plan(key: string, param: Float32Array, grads: readonly GradientSummand[], lr: number, step: number, gradScale = 1): StepJob {
    const { beta1, beta2, epsilon, weightDecay } = this.#settings;
    const [m, v] = [this.#m.get(key, param.length), this.#v.get(key, param.length)];
    // The bias corrections of step `step`, and AdamW's decay as a factor on the parameter.
    const options = { lr, scale: gradScale, beta1, beta2, c1: 1 - beta1 ** step, c2: 1 - beta2 ** step, epsilon, decay: 1 - lr * weightDecay };
    return { kind: "adam", param, grads, m, v, options };
  }

  state(): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>();
    this.#m.addTo(out);
    this.#v.addTo(out);
    return out;
  }

  loadState(state: ReadonlyMap<string, Float32Array>): void {
    this.#m.loadFrom(state);
    this.#v.loadFrom(state);
  }
}
