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
 * little-endian host this is a view, not a copy. float16 goes through Float16Array, whose
 * conversion runs natively (round to nearest, ties to even, as halfFromFloatBits) and is 3–4x
 * faster than the JavaScript loop; bfloat16 works on the float's bits (a Uint32Array view).
 */
export function encodeElements(src: Float32Array, from: number, to: number, dtype: Dtype): Uint8Array {
  if (dtype === Dtype.FLOAT32) {
    return new Uint8Array(src.buffer, src.byteOffset + from * 4, (to - from) * 4);
  }
  return encodeHalvesInto(src, from, to, dtype, new Uint8Array((to - from) * bytesPerElement(dtype)));
}

/**
 * Encodes src[from, to) as a 16-bit `dtype` into `out` (2-byte aligned, (to − from) × 2 bytes) and
 * returns it: for senders that reuse their wire buffers rather than allocate ~half the model's
 * size on every push (allocating that much external memory makes V8 run full collections).
 */
export function encodeHalvesInto(src: Float32Array, from: number, to: number, dtype: Dtype, out: Uint8Array): Uint8Array {
  const count = to - from;
  if (out.length !== count * 2 || out.byteOffset % 2 !== 0) throw new RangeError(`encodeHalvesInto: needs ${count * 2} aligned bytes, got ${out.length} at offset ${out.byteOffset}`);
  if (dtype === Dtype.FLOAT16) {
    new Float16Array(out.buffer, out.byteOffset, count).set(src.subarray(from, to));
    return out;
  }
  if (dtype !== Dtype.BFLOAT16) throw new RangeError(`encodeHalvesInto: ${dtypeName(dtype)} is not a 16-bit dtype`);
  const bits = new Uint32Array(src.buffer, src.byteOffset + from * 4, count);
  const halves = new Uint16Array(out.buffer, out.byteOffset, count);
  for (let i = 0; i < count; i++) halves[i] = bfloatFromFloatBits(bits[i]!);
  return out;
}

/**
 * Decodes little-endian `bytes` of `dtype` into dst starting at element `at`. `bytes` may sit at any
 * byte offset (decoded protobuf fields and socket buffers often do): float32 is copied bytewise
 * rather than viewed, and 16-bit data at an odd offset is first copied to an aligned buffer.
 * Returns the number of non-finite values written, so callers can refuse NaN/Inf without a second
 * pass over the wire bytes.
 */
export function decodeElements(bytes: Uint8Array, dtype: Dtype, dst: Float32Array, at: number): number {
  const size = bytesPerElement(dtype);
  const count = bytes.length / size;
  if (dtype === Dtype.FLOAT32) {
    new Uint8Array(dst.buffer, dst.byteOffset + at * 4, bytes.length).set(bytes);
    return countNonFiniteFloat32(new Uint32Array(dst.buffer, dst.byteOffset + at * 4, count));
  }
  // A copy (not bytes.slice(): on a Buffer that is a view at the same odd offset).
  const aligned = bytes.byteOffset % 2 === 0 ? bytes : new Uint8Array(bytes);
  if (dtype === Dtype.FLOAT16) {
    // One load from a table of all 65,536 values per element: about twice as fast as Float32Array
    // .set(Float16Array) here (11.2M elements: 12 vs 20 ms), and exact, since the table is made by
    // that very conversion.
    const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, count);
    const table = halfToFloatTable();
    for (let i = 0; i < count; i++) dst[at + i] = table[halves[i]!]!;
    return countNonFiniteHalves(halves, 0x7c00);
  }
  const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, count);
  const out = new Uint32Array(dst.buffer, dst.byteOffset + at * 4, count);
  for (let i = 0; i < count; i++) out[i] = halves[i]! << 16;
  return countNonFiniteHalves(halves, 0x7f80);
}

let halfToFloat: Float32Array | undefined;

/** Every float16 bit pattern's float32 value (256 KiB, made on first use). */
function halfToFloatTable(): Float32Array {
  if (halfToFloat === undefined) {
    const patterns = new Uint16Array(65536);
    for (let i = 0; i < patterns.length; i++) patterns[i] = i;
    halfToFloat = new Float32Array(65536);
    halfToFloat.set(new Float16Array(patterns.buffer));
  }
  return halfToFloat;
}

/**
 * Non-finite float32 values (exponent bits all ones) among `bits`. Almost every call finds none,
 * so a branch-free pass first asks whether there is any — adding the exponent's lowest bit to an
 * all-ones exponent carries into bit 31, which an OR collects — and only then counts; that is about
 * three times faster than counting with a compare per element.
 */
function countNonFiniteFloat32(bits: Uint32Array): number {
  let carry = 0;
  for (let i = 0; i < bits.length; i++) carry |= (bits[i]! & 0x7f800000) + 0x00800000;
  if ((carry & 0x80000000) === 0) return 0;
  let n = 0;
  for (let i = 0; i < bits.length; i++) if ((bits[i]! & 0x7f800000) === 0x7f800000) n++;
  return n;
}

/**
 * The same for 16-bit floats whose exponent occupies `exponentMask` (float16 0x7c00, bfloat16
 * 0x7f80). The any-test reads two halves at a time as one 32-bit word: adding the exponent's lowest
 * bit to an all-ones exponent carries into the top bit of its own 16-bit lane, never across.
 */
function countNonFiniteHalves(halves: Uint16Array, exponentMask: number): number {
  const lowestExponentBit = exponentMask & -exponentMask;
  let carry = 0;
  let from = 0;
  if (halves.byteOffset % 4 !== 0 && halves.length > 0) {
    carry |= (halves[0]! & exponentMask) + lowestExponentBit;
    from = 1;
  }
  const pairs = (halves.length - from) >>> 1;
  const words = new Uint32Array(halves.buffer, halves.byteOffset + from * 2, pairs);
  const wordMask = (exponentMask * 0x10001) >>> 0;
  const wordBit = lowestExponentBit * 0x10001;
  let wordCarry = 0;
  for (let i = 0; i < pairs; i++) wordCarry |= (words[i]! & wordMask) + wordBit;
  carry |= wordCarry | (wordCarry >>> 16);
  if (from + pairs * 2 < halves.length) carry |= (halves[halves.length - 1]! & exponentMask) + lowestExponentBit;
  if ((carry & 0x8000) === 0) return 0;
  let n = 0;
  for (let i = 0; i < halves.length; i++) if ((halves[i]! & exponentMask) === exponentMask) n++;
  return n;
}
