/**
 * Copying bytes between typed arrays as a plain memmove.
 *
 * Why not TypedArray.prototype.set: when either side is shared memory (the server keeps its
 * parameters, optimizer state and received gradients in SharedArrayBuffers so that helper threads
 * can apply a step with it: server/src/optimizer/parallel-step.ts), V8 copies with relaxed atomic
 * accesses, and byte by byte when the two offsets are not equally word-aligned, which a socket
 * buffer's never are. Measured here for 22 MB in 16 KiB pieces into shared memory: 5 ms with set(),
 * 0.7 ms with Node's Buffer copy, a memmove for any Uint8Array. Between ordinary buffers set() is
 * faster (0.4 ms), so it is used there.
 */

const memmove = Buffer.prototype.copy;

/** dst[at, at + (end − start)) ← src[start, end). The range must fit in dst (Buffer's copy would cut it short). */
export function copyBytes(src: Uint8Array, start: number, end: number, dst: Uint8Array, at: number): void {
  if (at + (end - start) > dst.length || start < 0 || end > src.length || start > end) {
    throw new RangeError(`copyBytes: bytes [${start}, ${end}) of ${src.length} do not fit at ${at} of ${dst.length}`);
  }
  if (!(src.buffer instanceof SharedArrayBuffer || dst.buffer instanceof SharedArrayBuffer)) {
    dst.set(src.subarray(start, end), at); // between ordinary buffers set() is the faster of the two
    return;
  }
  if (start === 0 && end === src.length && end > 1) {
    // Node hands a copy of the whole source to TypedArray.prototype.set (lib/buffer.js, _copyActual),
    // which is the slow copy for shared memory; any part of the source goes to its memmove.
    memmove.call(src, dst, at, 0, end - 1);
    memmove.call(src, dst, at + end - 1, end - 1, end);
    return;
  }
  memmove.call(src, dst, at, start, end);
}

/** The bytes of a typed array (a view: nothing is copied). */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
