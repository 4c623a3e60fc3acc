/**
 * Element types on the wire and their conversion to and from float32.
 *
 * In memory every tensor is float32; float16 and bfloat16 exist only on the wire, to halve the bytes
 * of a pull or a push. Conversions round to nearest, ties to even.
 */
import { Dtype } from "./gen/paramserver/v1/parameter_server_pb.js";

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
 * little-endian host this is a view, not a copy. The 16-bit conversions work on the float's bits
 * (a Uint32Array view), one pass, no per-element scratch writes.
 */
export function encodeElements(src: Float32Array, from: number, to: number, dtype: Dtype): Uint8Array {
  if (dtype === Dtype.FLOAT32) {
    return new Uint8Array(src.buffer, src.byteOffset + from * 4, (to - from) * 4);
  }
  if (dtype !== Dtype.FLOAT16 && dtype !== Dtype.BFLOAT16) bytesPerElement(dtype); // throws
  const bits = new Uint32Array(src.buffer, src.byteOffset + from * 4, to - from);
  const out = new Uint16Array(to - from);
  if (dtype === Dtype.FLOAT16) for (let i = 0; i < out.length; i++) out[i] = halfFromFloatBits(bits[i]!);
  else for (let i = 0; i < out.length; i++) out[i] = bfloatFromFloatBits(bits[i]!);
  return new Uint8Array(out.buffer);
}

/**
 * Decodes little-endian `bytes` of `dtype` into dst starting at element `at`. `bytes` may sit at any
 * byte offset (decoded protobuf fields often do): float32 is copied bytewise rather than viewed, and
 * 16-bit data at an odd offset is first copied to an aligned buffer. Returns the number of
 * non-finite values written, so callers can refuse NaN/Inf without a second pass.
 */
export function decodeElements(bytes: Uint8Array, dtype: Dtype, dst: Float32Array, at: number): number {
  const size = bytesPerElement(dtype);
  const count = bytes.length / size;
  let nonFinite = 0;
  if (dtype === Dtype.FLOAT32) {
    new Uint8Array(dst.buffer, dst.byteOffset + at * 4, bytes.length).set(bytes);
    // Exponent bits all ones ⇔ Inf or NaN; an integer test on the bits is cheaper than isFinite.
    const bits = new Uint32Array(dst.buffer, dst.byteOffset + at * 4, count);
    for (let i = 0; i < count; i++) if ((bits[i]! & 0x7f800000) === 0x7f800000) nonFinite++;
    return nonFinite;
  }
  const aligned = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
  const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, count);
  if (dtype === Dtype.FLOAT16) {
    // Bit arithmetic for normal numbers (a table lookup per element misses the cache: the table is
    // 256 KB); subnormals, zeros, Inf and NaN go through the table.
    const out = new Uint32Array(dst.buffer, dst.byteOffset + at * 4, count);
    const table = HALF_TO_FLOAT;
    for (let i = 0; i < count; i++) {
      const h = halves[i]!;
      const e = h & 0x7c00;
      if (e !== 0 && e !== 0x7c00) {
        // Rebias the exponent (127 - 15) and widen the mantissa: ((h & 0x7fff) << 13) + (112 << 23).
        out[i] = ((h & 0x8000) << 16) | (((h & 0x7fff) << 13) + 0x38000000);
      } else {
        dst[at + i] = table[h]!;
        if (e === 0x7c00) nonFinite++;
      }
    }
  } else {
    const out = new Uint32Array(dst.buffer, dst.byteOffset + at * 4, count);
    for (let i = 0; i < count; i++) {
      const h = halves[i]!;
      out[i] = h << 16;
      if ((h & 0x7f80) === 0x7f80) nonFinite++;
    }
  }
  return nonFinite;
}
