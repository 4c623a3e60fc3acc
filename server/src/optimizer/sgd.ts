import type { Optimizer } from "./optimizer.ts";

/** Plain SGD: p ← p − lr·(g + wd·p). */
export class Sgd implements Optimizer {
  readonly name = "sgd";
  readonly #weightDecay: number;

  constructor(options: { weightDecay: number }) {
    this.#weightDecay = options.weightDecay;
  }

  apply(_key: string, param: Float32Array, grad: Float32Array, lr: number, _step: number, gradScale = 1): void {
    const wd = this.#weightDecay;
    const s = gradScale;
    for (let i = 0; i < param.length; i++) param[i] = param[i]! - lr * (grad[i]! * s + wd * param[i]!);
  }

  state(): Map<string, Float32Array> {
    return new Map();
  }

  loadState(): void {}
}
