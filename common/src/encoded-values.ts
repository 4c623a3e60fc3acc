/**
 * A tensor's values kept as they arrived on the wire (float32, float16 or bfloat16 bytes), to be
 * decoded where they are used.
 *
 * Why: the server used to decode every pushed gradient into float32 buffers as it arrived, and read
 * those back when the step was applied: for a float16 push, 2 bytes read, 4 written and 4 read
 * again per value. Kept encoded, it is 2 written and 2 read, and the optimizer's pass decodes
 * block by block in the cache (kernels/simd.ts).
 *
 * The bytes are copied into `storage`, memory the receiver reuses from push to push. Keeping views
 * of the receive buffers instead copied nothing, but held every socket buffer of the step until it
 * was applied, and the server's profile showed more time in garbage collection and native code
 * than the copy costs.
 */
import { copyBytes } from "./copy-bytes.ts";

export type ValueFormat = "float32" | "float16" | "bfloat16";

export function bytesPerValue(format: ValueFormat): number {
  return format === "float32" ? 4 : 2;
}

export class EncodedValues {
  readonly format: ValueFormat;
  /** Values the tensor holds. */
  readonly length: number;
  readonly #size: number;
  readonly #storage: Uint8Array;
  #received = 0;

  /** `storage` takes exactly `length` values of `format`. */
  constructor(format: ValueFormat, length: number, storage: Uint8Array) {
    this.format = format;
    this.length = length;
    this.#size = bytesPerValue(format);
    if (storage.length !== length * this.#size) {
      throw new RangeError(`EncodedValues: ${storage.length} bytes of storage for ${length} ${format} values`);
    }
    this.#storage = storage;
  }

  /**
   * Values already in `storage`, all of them received: how another thread, handed the storage,
   * reads a gradient summand kept in shared memory, float32 ones included
   * (server/src/optimizer/step-job.ts).
   */
  static received(format: ValueFormat, storage: Uint8Array): EncodedValues {
    const length = storage.length / bytesPerValue(format);
    if (!Number.isInteger(length)) throw new RangeError(`EncodedValues: ${storage.length} bytes are not whole ${format} values`);
    const values = new EncodedValues(format, length, storage);
    values.#received = values.length;
    return values;
  }

  /** Values received so far. */
  get received(): number {
    return this.#received;
  }

  /** Copies in the next whole values, in order. */
  append(bytes: Uint8Array): void {
    const count = bytes.length / this.#size;
    if (!Number.isInteger(count)) throw new RangeError(`EncodedValues: ${bytes.length} bytes are not whole ${this.format} values`);
    if (this.#received + count > this.length) throw new RangeError(`EncodedValues: ${this.#received + count} values for a tensor of ${this.length}`);
    copyBytes(bytes, 0, bytes.length, this.#storage, this.#received * this.#size);
    this.#received += count;
  }

  /** The bytes of values [from, from + count) (a view). */
  bytes(from: number, count: number): Uint8Array {
    if (from < 0 || count < 0 || from + count > this.#received) {
      throw new RangeError(`EncodedValues: values [${from}, ${from + count}) requested, ${this.#received} received`);
    }
    return this.#storage.subarray(from * this.#size, (from + count) * this.#size);
  }
}
