/**
 * Element types on the wire and their conversion to and from float32.
 *
 * In memory every tensor is float32; float16 and bfloat16 exist only on the wire, to halve the bytes
 * of a pull or a push (and in a pushed gradient the server keeps as it arrived until its step,
 * encoded-values.ts). Conversions round to nearest, ties to even.
 */
import { endianness } from "node:os";
import { Dtype } from "./gen/paramserver/v1/parameter_server_pb.js";
import type { ValueFormat } from "./encoded-values.ts";
import { anyNonFinite, decodeBfloat16, decodeFloat16, decodeFloat32, encodeBfloat16, encodeFloat16 } from "./kernels/simd.ts";

// Float32Array views are in host byte order and the wire is little-endian. Every platform Node
// ships for (x64, arm64) is little-endian; refuse loudly rather than corrupt data elsewhere.
if (endianness() !== "LE") throw new Error("this program needs a little-endian host");

/** Bytes per element of a wire dtype; throws for DTYPE_UNSPECIFIED or unknown values. */
export function bytesPerElement(dtype: Dtype): number {
  switch (dtype) {
    case Dtype.FLOAT32:
      return 4;
    case Dtype.FLOAT16:
    case Dtype.BFLOAT16:
      return 2;
    default:
      throw new RangeError(`unsupported dtype ${dtype} (expected FLOAT32, FLOAT16 or BFLOAT16)`);
  }
}

export function dtypeName(dtype: Dtype): string {
  return Dtype[dtype] ?? `dtype ${dtype}`;
}

// Scratch views for bit-level conversion; module-level so conversion allocates nothing.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 → IEEE binary16 bits. */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  return halfFromFloatBits(u32[0]!);
}

/** 0.5 as float32 bits: adding it aligns a small float's bits to binary16 subnormal positions. */
const DENORM_MAGIC = (127 - 15 + (23 - 10) + 1) << 23;

/**
 * The binary16 bits nearest to the float32 with bit pattern `x` (round to nearest, ties to even).
 * After F. Giesen's float_to_half_fast3_rtne: normal numbers take one integer expression (exponent
 * rebias plus the rounding bias), subnormals one float addition that lets the FPU round.
 */
function halfFromFloatBits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const u = x & 0x7fffffff;
  if (u >= 0x47800000) return sign | (u > 0x7f800000 ? 0x7e00 : 0x7c00); // overflow → Inf; NaN stays NaN
  if (u < 0x38800000) {
    // Subnormal or zero in binary16.
    u32[0] = u;
    const v = f32[0]!;
    u32[0] = DENORM_MAGIC;
    f32[0] = v + f32[0]!;
    return sign | ((u32[0]! - DENORM_MAGIC) & 0xffff);
  }
  // Rebias the exponent (15 - 127) and round: +0xfff, +1 more when the kept mantissa is odd.
  return sign | (((u - 939524096 + 0xfff + ((u >>> 13) & 1)) >>> 13) & 0xffff);
}

// All 65536 half values precomputed: decoding is a table lookup per element.
const HALF_TO_FLOAT = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    let v: number;
    if (exp === 0) v = mant * 2 ** -24;
    else if (exp === 0x1f) v = mant === 0 ? Infinity : NaN;
    else v = (1 + mant / 1024) * 2 ** (exp - 15);
    table[h] = sign * v;
  }
  return table;
})();

export function float16BitsToFloat32(bits: number): number {
  return HALF_TO_FLOAT[bits & 0xffff]!;
}

/** float32 → bfloat16 bits (the upper half of the float32, rounded). */
export function float32ToBfloat16Bits(value: number): number {
  f32[0] = value;
  return bfloatFromFloatBits(u32[0]!);
}

function bfloatFromFloatBits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff; // keep NaN a NaN
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bfloat16BitsToFloat32(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0]!;
}

/**
 * Encodes src[from, to) as `dtype` into a new byte array (little-endian). For float32 on a
 * little-endian host this is a view, not a copy. The 16-bit types go through the SIMD kernels
 * (kernels/simd.ts), which round to nearest, ties to even, as halfFromFloatBits and
 * bfloatFromFloatBits do.
 */
export function encodeElements(src: Float32Array, from: number, to: number, dtype: Dtype): Uint8Array {
  if (dtype === Dtype.FLOAT32) {
    return new Uint8Array(src.buffer, src.byteOffset + from * 4, (to - from) * 4);
  }
  return encodeHalvesInto(src, from, to, dtype, new Uint8Array((to - from) * bytesPerElement(dtype)));
}

/**
 * Encodes src[from, to) as a 16-bit `dtype` into `out` ((to − from) × 2 bytes, any offset) and
 * returns it: for senders that reuse their wire buffers rather than allocate ~half the model's
 * size on every push (allocating that much external memory makes V8 run full collections).
 */
export function encodeHalvesInto(src: Float32Array, from: number, to: number, dtype: Dtype, out: Uint8Array): Uint8Array {
  const count = to - from;
  if (out.length !== count * 2) throw new RangeError(`encodeHalvesInto: needs ${count * 2} bytes, got ${out.length}`);
  if (dtype === Dtype.FLOAT16) {
    encodeFloat16(src.subarray(from, to), out);
    return out;
  }
  if (dtype !== Dtype.BFLOAT16) throw new RangeError(`encodeHalvesInto: ${dtypeName(dtype)} is not a 16-bit dtype`);
  encodeBfloat16(src.subarray(from, to), out);
  return out;
}

/**
 * Decodes little-endian `bytes` of `dtype` into dst starting at element `at`. `bytes` may sit at any
 * byte offset (decoded protobuf fields and socket buffers often do). Returns the number of
 * non-finite values written, so callers can refuse NaN/Inf without a second pass over the wire
 * bytes. The SIMD kernels only say whether there is any; the count is taken only then.
 */
export function decodeElements(bytes: Uint8Array, dtype: Dtype, dst: Float32Array, at: number): number {
  const count = bytes.length / bytesPerElement(dtype);
  const anyNonFinite =
    dtype === Dtype.FLOAT32 ? decodeFloat32(bytes, dst, at) : dtype === Dtype.FLOAT16 ? decodeFloat16(bytes, dst, at) : decodeBfloat16(bytes, dst, at);
  return anyNonFinite ? countNonFinite(dst.subarray(at, at + count)) : 0;
}

/** The ValueFormat (encoded-values.ts) of a wire dtype; throws for DTYPE_UNSPECIFIED or unknown values. */
export function valueFormat(dtype: Dtype): ValueFormat {
  switch (dtype) {
    case Dtype.FLOAT32:
      return "float32";
    case Dtype.FLOAT16:
      return "float16";
    case Dtype.BFLOAT16:
      return "bfloat16";
    default:
      throw new RangeError(`unsupported dtype ${dtype} (expected FLOAT32, FLOAT16 or BFLOAT16)`);
  }
}

/**
 * How many of the little-endian `dtype` values in `bytes` (whole values, any byte offset) are
 * infinite or NaN, without keeping them decoded: a SIMD check, and a count only when it finds some.
 */
export function countNonFiniteElements(bytes: Uint8Array, dtype: Dtype): number {
  if (!anyNonFinite(bytes, valueFormat(dtype))) return 0;
  const values = new Float32Array(bytes.length / bytesPerElement(dtype));
  return decodeElements(bytes, dtype, values, 0);
}

function countNonFinite(values: Float32Array): number {
  let n = 0;
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) n++;
  return n;
}
