/**
 * A named float32 tensor as both sides hold it in memory: the server stores parameters this way and
 * the worker hands its model's weights and gradients over this way. Elements are row-major.
 */
export interface NamedTensor {
  /** Stable name, for example "dense1/kernel"; identical across workers and runs. */
  readonly name: string;
  /** Dimensions, outermost first. The product is data.length. */
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Number of elements a shape holds (1 for a scalar's empty shape). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * A sparse float32 tensor: only the elements at `indices` (flat, row-major) are non-zero. Used for
 * top-k compressed gradients.
 */
export interface SparseTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly indices: Uint32Array;
  readonly values: Float32Array;
}

export function isSparse(t: NamedTensor | SparseTensor): t is SparseTensor {
  return "indices" in t;
}
