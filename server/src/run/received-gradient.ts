/**
 * A pushed gradient as the server holds it until the step that applies it: one summand per
 * parameter tensor, in storage order.
 *
 * Dense tensors are kept as they arrived on the wire (EncodedValues, checked for NaN and infinity
 * on arrival), one after the other in a byte region from the run's pool, and decoded by the
 * optimizer's pass. Sparse (top-k) tensors are scattered into a float32 set from the pool on
 * arrival, since their values come with indices in any order.
 */
import { bytesPerValue, EncodedValues, type ValueFormat } from "@distributed-ps/common/encoded-values.ts";
import type { GradientSummand } from "@distributed-ps/common/kernels/simd.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import type { GradientBuffers } from "../store/gradient-buffers.ts";

export class ReceivedGradient {
  readonly #summands: (GradientSummand | undefined)[];
  readonly #buffers: GradientBuffers;
  /** A float32 set from the pool, taken at the first sparse tensor. */
  #scattered: NamedTensor[] | undefined;
  /** A byte region from the pool, taken at the first dense tensor, and how much of it is used. */
  #region: Uint8Array | undefined;
  #used = 0;
  #released = false;

  constructor(tensorCount: number, buffers: GradientBuffers) {
    this.#summands = new Array<GradientSummand | undefined>(tensorCount).fill(undefined);
    this.#buffers = buffers;
  }

  /** Where tensor `index` (`length` values) is kept: encoded as received, or float32 for a sparse one. */
  receive(index: number, length: number, format: ValueFormat, sparse: boolean): { keep: EncodedValues } | { into: Float32Array } {
    if (sparse) {
      this.#scattered ??= this.#buffers.take();
      const into = this.#scattered[index]!.data;
      this.#summands[index] = into;
      return { into };
    }
    this.#region ??= this.#buffers.takeRegion();
    const bytes = length * bytesPerValue(format);
    // At most 4 bytes per parameter, each tensor once (the assembler refuses a tensor sent twice).
    const keep = new EncodedValues(format, length, this.#region.subarray(this.#used, (this.#used += bytes)));
    this.#summands[index] = keep;
    return { keep };
  }

  /** The summands in storage order; every tensor must have been received. */
  get tensors(): readonly GradientSummand[] {
    const missing = this.#summands.findIndex((s) => s === undefined);
    if (missing >= 0) throw new Error(`gradient tensor ${missing} was never received`);
    return this.#summands as GradientSummand[];
  }

  /** Gives the pool's buffers back (once; later calls do nothing). The summands must not be used after. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    if (this.#scattered !== undefined) this.#buffers.give(this.#scattered);
    if (this.#region !== undefined) this.#buffers.giveRegion(this.#region);
  }
}
