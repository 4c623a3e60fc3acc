/**
 * Reusable memory for received gradients: byte regions that dense gradients are kept in as they
 * arrived (received-gradient.ts), and float32 sets shaped like the parameters that sparse (top-k)
 * gradients are scattered into. Reuse matters: fresh memory for every push costs page faults on
 * every round (~20 ms per 45 MB here). Both are shared memory, which the step's helper threads
 * read in place (parallel-step.ts).
 */
import { elementCount, type NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import type { ParameterStore } from "./parameter-store.ts";
import { sharedBytes, sharedFloat32 } from "./shared-memory.ts";

export class GradientBuffers {
  readonly #store: ParameterStore;
  readonly #freeSets: NamedTensor[][] = [];
  readonly #freeRegions: Uint8Array[] = [];
  #maxFree: number;

  /** Buffers follow the store's layout, known once the parameters are initialised. */
  constructor(store: ParameterStore, maxFree = 4) {
    this.#store = store;
    this.#maxFree = maxFree;
  }

  /** A set of float32 buffers in storage order; its contents are left over from earlier use. */
  take(): NamedTensor[] {
    return this.#freeSets.pop() ?? this.#store.layout().map((l) => ({ name: l.name, shape: l.shape, data: sharedFloat32(elementCount(l.shape)) }));
  }

  give(set: NamedTensor[]): void {
    if (this.#freeSets.length < this.#maxFree) this.#freeSets.push(set);
  }

  /**
   * A region of 4 bytes per parameter, room for a whole gradient in any wire dtype; its contents
   * are left over from earlier use. A 16-bit gradient fills half of it, and only the pages it
   * touches take memory.
   */
  takeRegion(): Uint8Array {
    return this.#freeRegions.pop() ?? sharedBytes(this.#store.elementCount * 4);
  }

  giveRegion(region: Uint8Array): void {
    if (this.#freeRegions.length < this.#maxFree) this.#freeRegions.push(region);
  }

  /** Keeps at least `count` of each for reuse (the worker count grew). */
  reserve(count: number): void {
    this.#maxFree = Math.max(this.#maxFree, count);
  }
}
