import { StateBuffers, type Optimizer } from "./optimizer.ts";

/**
 * Adam (Kingma & Ba) with bias correction, and decoupled weight decay (AdamW: p ← p − lr·wd·p)
 * when weightDecay > 0:
 *   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
 *   p ← p − lr·(m/(1−β1^t)) / (√(v/(1−β2^t)) + ε)
 */
export class Adam implements Optimizer {
  readonly name: string;
  readonly #beta1: number;
  readonly #beta2: number;
  readonly #epsilon: number;
  readonly #weightDecay: number;
  readonly #m = new StateBuffers("m");
  readonly #v = new StateBuffers("v");

  constructor(options: { beta1: number; beta2: number; epsilon: number; weightDecay: number }) {
    this.#beta1 = options.beta1;
    this.#beta2 = options.beta2;
    this.#epsilon = options.epsilon;
    this.#weightDecay = options.weightDecay;
    this.name = options.weightDecay > 0 ? "adamw" : "adam";
  }

  apply(key: string, param: Float32Array, grad: Float32Array, lr: number, step: number, gradScale = 1): void {
    const m = this.#m.get(key, param.length);
    const v = this.#v.get(key, param.length);
    const b1 = this.#beta1;
    const b2 = this.#beta2;
    const eps = this.#epsilon;
    const c1 = 1 - b1 ** step;
    const c2 = 1 - b2 ** step;
    const decay = 1 - lr * this.#weightDecay;
    const s = gradScale;
    for (let i = 0; i < param.length; i++) {
      const g = grad[i]! * s;
      const mi = b1 * m[i]! + (1 - b1) * g;
      const vi = b2 * v[i]! + (1 - b2) * g * g;
      m[i] = mi;
      v[i] = vi;
      param[i] = param[i]! * decay - (lr * (mi / c1)) / (Math.sqrt(vi / c2) + eps);
    }
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
