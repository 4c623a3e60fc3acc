/**
 * Reusable float32 buffers shaped like the parameters, for decoding incoming gradients and summing
 * them. Reuse matters: allocating a fresh 45 MB set per push costs page faults on every round.
 */
import { elementCount, type NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import type { ParameterStore } from "./parameter-store.ts";

export class GradientBuffers {
  readonly #store: ParameterStore;
  readonly #free: NamedTensor[][] = [];
  #maxFree: number;

  /** Buffers follow the store's layout, known once the parameters are initialised. */
  constructor(store: ParameterStore, maxFree = 4) {
    this.#store = store;
    this.#maxFree = maxFree;
  }

  /** A set of buffers in storage order; its contents are left over from earlier use. */
  take(): NamedTensor[] {
    return this.#free.pop() ?? this.#store.layout().map((l) => ({ name: l.name, shape: l.shape, data: new Float32Array(elementCount(l.shape)) }));
  }

  /** Keeps at least `count` sets for reuse (the worker count grew). */
  reserve(count: number): void {
    this.#maxFree = Math.max(this.#maxFree, count);
  }

  give(set: NamedTensor[]): void {
    if (this.#free.length < this.#maxFree) this.#free.push(set);
  }
}
