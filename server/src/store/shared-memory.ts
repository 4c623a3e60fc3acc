/**
 * Buffers in shared memory, for what the step's helper threads update in place (parallel-step.ts):
 * the parameters, the optimizer's state and the received gradients. They behave as ordinary
 * typed arrays on this thread; postMessage hands other threads views of the same memory instead of
 * copies.
 */

export function sharedFloat32(length: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(length * Float32Array.BYTES_PER_ELEMENT));
}

/** A copy of `data` in shared memory. */
export function sharedCopy(data: Float32Array): Float32Array {
  const copy = sharedFloat32(data.length);
  copy.set(data);
  return copy;
}

export function sharedBytes(length: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(length));
}
