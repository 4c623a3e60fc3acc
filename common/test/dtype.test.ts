import t from "tap";
import { Dtype } from "../src/gen/paramserver/v1/parameter_server_pb.js";
import {
  bfloat16BitsToFloat32,
  bytesPerElement,
  decodeElements,
  encodeElements,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
} from "../src/dtype.ts";

const hex = (n: number) => `0x${n.toString(16).padStart(4, "0")}`;

/** Copies `bytes` into a larger buffer at `offset` and returns a view of exactly those bytes. */
function atOffset(bytes: Uint8Array, offset: number): Uint8Array {
  const big = new Uint8Array(offset + bytes.length + 3).fill(0xee);
  big.set(bytes, offset);
  return big.subarray(offset, offset + bytes.length);
}

t.test("bytesPerElement: 4 for float32, 2 for the half types, throws for UNSPECIFIED", async (t) => {
  t.equal(bytesPerElement(Dtype.FLOAT32), 4, "float32 is 4 bytes");
  t.equal(bytesPerElement(Dtype.FLOAT16), 2, "float16 is 2 bytes");
  t.equal(bytesPerElement(Dtype.BFLOAT16), 2, "bfloat16 is 2 bytes");
  t.throws(() => bytesPerElement(Dtype.UNSPECIFIED), RangeError, "UNSPECIFIED has no element size");
});

t.test("float16 encodes known values to their IEEE binary16 bit patterns", async (t) => {
  const cases: [number, number, string][] = [
    [1.0, 0x3c00, "1.0: sign 0, exp 15 (01111), mantissa 0"],
    [-2, 0xc000, "-2: sign 1, exp 16 (10000), mantissa 0"],
    [0.5, 0x3800, "0.5: exp 14"],
    [65504, 0x7bff, "65504 = (2 - 2^-10) * 2^15, the largest finite half"],
    [65519, 0x7bff, "65519 < midpoint 65520 between 65504 and 65536: rounds down to max finite"],
    [65520, 0x7c00, "65520 is the tie between 0x7bff (odd) and 65536: ties to even -> Inf"],
    [1e6, 0x7c00, "1e6 overflows to +Inf"],
    [-1e6, 0xfc00, "-1e6 overflows to -Inf"],
    [Infinity, 0x7c00, "+Inf stays +Inf"],
    [-Infinity, 0xfc00, "-Inf stays -Inf"],
    [2 ** -14, 0x0400, "2^-14 is the smallest normal"],
    [2 ** -24, 0x0001, "2^-24 is the smallest subnormal"],
    [1023 * 2 ** -24, 0x03ff, "1023 * 2^-24 is the largest subnormal"],
    [3 * 2 ** -25, 0x0002, "1.5 * 2^-24 ties between 0x0001 (odd) and 0x0002: ties to even -> 0x0002"],
    [5 * 2 ** -25, 0x0002, "2.5 * 2^-24 ties between 0x0002 (even) and 0x0003: -> 0x0002"],
    [2 ** -25, 0x0000, "2^-25 is half the smallest subnormal: tie between 0 (even) and 0x0001 -> 0"],
    [1.5 * 2 ** -25, 0x0001, "0.75 * 2^-24 is above the midpoint: rounds up to 0x0001"],
    [2 ** -26, 0x0000, "2^-26 underflows to 0"],
    [-(2 ** -30), 0x8000, "a tiny negative underflows to -0"],
    [1 + 2 ** -11, 0x3c00, "1 + 2^-11 ties between 0x3c00 (even) and 0x3c01: -> 0x3c00"],
    [1 + 3 * 2 ** -11, 0x3c02, "1 + 3*2^-11 ties between 0x3c01 (odd) and 0x3c02: -> 0x3c02"],
    [1 + 2 ** -10, 0x3c01, "1 + 2^-10 is exact: mantissa 1"],
    [2049, 0x6800, "2049 ties between 2048 (mantissa 0, even) and 2050: -> 2048 = 0x6800"],
    [2051, 0x6802, "2051 ties between 2050 (mantissa 1, odd) and 2052: -> 2052 = 0x6802"],
    [(1024 - 0.5) * 2 ** -24, 0x0400, "1023.5 * 2^-24 ties between 0x03ff (odd) and 0x0400: rounds up into the smallest normal"],
  ];
  for (const [value, bits, why] of cases) t.equal(hex(float32ToFloat16Bits(value)), hex(bits), why);
});

t.test("float16 keeps NaN a NaN and keeps the sign of zero", async (t) => {
  const nanBits = float32ToFloat16Bits(NaN);
  t.equal(nanBits & 0x7c00, 0x7c00, "NaN has an all-ones exponent");
  t.not(nanBits & 0x03ff, 0, "NaN has a non-zero mantissa (not Inf)");
  t.ok(Number.isNaN(float16BitsToFloat32(nanBits)), "NaN decodes back to NaN");
  t.equal(hex(float32ToFloat16Bits(-0)), "0x8000", "-0 encodes with the sign bit set");
  t.equal(hex(float32ToFloat16Bits(0)), "0x0000", "+0 encodes to all zeros");
  t.ok(Object.is(float16BitsToFloat32(0x8000), -0), "0x8000 decodes to -0");
  t.ok(Object.is(float16BitsToFloat32(0x0000), 0), "0x0000 decodes to +0");
});

t.test("float16 decodes known bit patterns", async (t) => {
  t.equal(float16BitsToFloat32(0x3c00), 1, "0x3c00 is 1");
  t.equal(float16BitsToFloat32(0xc000), -2, "0xc000 is -2");
  t.equal(float16BitsToFloat32(0x7bff), 65504, "0x7bff is 65504");
  t.equal(float16BitsToFloat32(0x7c00), Infinity, "0x7c00 is +Inf");
  t.equal(float16BitsToFloat32(0xfc00), -Infinity, "0xfc00 is -Inf");
  t.equal(float16BitsToFloat32(0x0001), 2 ** -24, "0x0001 is 2^-24");
  t.equal(float16BitsToFloat32(0x03ff), 1023 * 2 ** -24, "0x03ff is 1023 * 2^-24");
  t.equal(float16BitsToFloat32(0x0400), 2 ** -14, "0x0400 is 2^-14");
  t.equal(float16BitsToFloat32(0x3555), 0.333251953125, "0x3555 = (1 + 341/1024) * 2^-2 = 0.333251953125");
  t.ok(Number.isNaN(float16BitsToFloat32(0x7e00)), "0x7e00 is NaN");
});

t.test("bfloat16 encodes known values (upper half of float32, rounded to nearest even)", async (t) => {
  const cases: [number, number, string][] = [
    [1.0, 0x3f80, "1.0 = float32 0x3f800000"],
    [-2, 0xc000, "-2 = float32 0xc0000000"],
    [Math.PI, 0x4049, "pi = float32 0x40490fdb; low half 0x0fdb < 0x8000 rounds down"],
    [1 + 2 ** -8, 0x3f80, "1 + 2^-8 = 0x3f808000: tie between 0x3f80 (even) and 0x3f81 -> 0x3f80"],
    [1 + 3 * 2 ** -8, 0x3f82, "1 + 3*2^-8 = 0x3f818000: tie between 0x3f81 (odd) and 0x3f82 -> 0x3f82"],
    [1 + 2 ** -8 + 2 ** -20, 0x3f81, "just above the tie rounds up"],
    [Infinity, 0x7f80, "+Inf"],
    [-Infinity, 0xff80, "-Inf"],
    [3.3895313892515355e38, 0x7f7f, "largest finite bfloat16 (0x7f7f0000) is exact"],
  ];
  for (const [value, bits, why] of cases) t.equal(hex(float32ToBfloat16Bits(value)), hex(bits), why);
  t.equal(hex(float32ToBfloat16Bits(-0)), "0x8000", "-0 keeps its sign");
  t.ok(Object.is(bfloat16BitsToFloat32(0x8000), -0), "0x8000 decodes to -0");
});

t.test("bfloat16 keeps NaN a NaN and decodes known patterns", async (t) => {
  const nanBits = float32ToBfloat16Bits(NaN);
  t.equal(nanBits & 0x7f80, 0x7f80, "NaN has an all-ones exponent");
  t.not(nanBits & 0x007f, 0, "NaN has a non-zero mantissa (not Inf)");
  t.ok(Number.isNaN(bfloat16BitsToFloat32(nanBits)), "NaN round-trips as NaN");
  t.equal(bfloat16BitsToFloat32(0x3f80), 1, "0x3f80 is 1");
  t.equal(bfloat16BitsToFloat32(0x4049), 3.140625, "0x4049 = 0x40490000 = 1.5703125 * 2 = 3.140625");
  t.equal(bfloat16BitsToFloat32(0xff80), -Infinity, "0xff80 is -Inf");
});

t.test("encodeElements/decodeElements round trip for every dtype", async (t) => {
  // Values exactly representable in all three dtypes, so all round trips are lossless.
  const exact = new Float32Array([1, -2, 0.5, 3.5, -0.25, 96, 0, -1024]);
  for (const dtype of [Dtype.FLOAT32, Dtype.FLOAT16, Dtype.BFLOAT16]) {
    const size = bytesPerElement(dtype);
    const bytes = encodeElements(exact, 0, exact.length, dtype);
    t.equal(bytes.length, exact.length * size, `${Dtype[dtype]}: ${exact.length} elements take ${exact.length * size} bytes`);
    const out = new Float32Array(exact.length);
    t.equal(decodeElements(bytes, dtype, out, 0), 0, `${Dtype[dtype]}: no non-finite values`);
    t.same(Array.from(out), Array.from(exact), `${Dtype[dtype]}: exact values survive the round trip`);
  }
});

t.test("encodeElements encodes a sub-range, little-endian", async (t) => {
  const src = new Float32Array([9, 1, -2, 9]);
  const f16 = encodeElements(src, 1, 3, Dtype.FLOAT16);
  // 1 -> 0x3c00 -> bytes 00 3c; -2 -> 0xc000 -> bytes 00 c0
  t.same(Array.from(f16), [0x00, 0x3c, 0x00, 0xc0], "float16 of [1, -2] is 00 3c 00 c0");
  const bf16 = encodeElements(src, 1, 3, Dtype.BFLOAT16);
  // 1 -> 0x3f80 -> 80 3f; -2 -> 0xc000 -> 00 c0
  t.same(Array.from(bf16), [0x80, 0x3f, 0x00, 0xc0], "bfloat16 of [1, -2] is 80 3f 00 c0");
  const f32 = encodeElements(src, 1, 3, Dtype.FLOAT32);
  // 1 = 0x3f800000 -> 00 00 80 3f; -2 = 0xc0000000 -> 00 00 00 c0
  t.same(Array.from(f32), [0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0], "float32 of [1, -2] is its little-endian bytes");
  t.equal(f32.buffer, src.buffer, "float32 encoding is a view of the source, not a copy");
  t.throws(() => encodeElements(src, 0, 1, Dtype.UNSPECIFIED), RangeError, "UNSPECIFIED cannot be encoded");
});

t.test("decodeElements reads a source view at an odd byte offset (as protobuf decoding produces)", async (t) => {
  const values = new Float32Array([1.5, -3, 0.125, 7]);
  for (const dtype of [Dtype.FLOAT32, Dtype.FLOAT16, Dtype.BFLOAT16]) {
    const encoded = encodeElements(values, 0, values.length, dtype);
    for (const offset of [5, 7]) {
      const view = atOffset(encoded, offset);
      t.equal(view.byteOffset, offset, `view sits at byte offset ${offset}`);
      // decode into the middle of a destination that is itself a subarray
      const backing = new Float32Array(8).fill(99);
      const dst = backing.subarray(1, 7);
      const bad = decodeElements(view, dtype, dst, 1);
      t.equal(bad, 0, `${Dtype[dtype]} @${offset}: no non-finite values`);
      t.same(Array.from(backing), [99, 99, 1.5, -3, 0.125, 7, 99, 99], `${Dtype[dtype]} @${offset}: decoded into dst[1..5) only`);
    }
  }
});

t.test("lossy half types stay within their precision", async (t) => {
  const src = new Float32Array([Math.PI, -Math.E, 0.1, 1234.5678]);
  for (const [dtype, relTol] of [
    [Dtype.FLOAT16, 2 ** -11], // 10 mantissa bits: half an ulp is 2^-11 relative
    [Dtype.BFLOAT16, 2 ** -8], // 7 mantissa bits: half an ulp is 2^-8 relative
  ] as const) {
    const out = new Float32Array(src.length);
    decodeElements(atOffset(encodeElements(src, 0, src.length, dtype), 5), dtype, out, 0);
    for (let i = 0; i < src.length; i++) {
      const rel = Math.abs(out[i]! - src[i]!) / Math.abs(src[i]!);
      t.ok(rel <= relTol, `${Dtype[dtype]}: ${src[i]} -> ${out[i]} within ${relTol} relative (got ${rel})`);
    }
  }
  // float16 of pi: 0x4248 = (1 + 584/1024) * 2 = 3.140625
  t.equal(hex(float32ToFloat16Bits(Math.PI)), "0x4248", "pi in float16 is 0x4248");
});

t.test("decodeElements counts non-finite values", async (t) => {
  const src = new Float32Array([1, NaN, Infinity, 2, -Infinity, 3]);
  for (const dtype of [Dtype.FLOAT32, Dtype.FLOAT16, Dtype.BFLOAT16]) {
    const out = new Float32Array(src.length);
    const n = decodeElements(atOffset(encodeElements(src, 0, src.length, dtype), 7), dtype, out, 0);
    t.equal(n, 3, `${Dtype[dtype]}: NaN, +Inf and -Inf counted (3)`);
    t.ok(Number.isNaN(out[1]!), `${Dtype[dtype]}: NaN decoded as NaN`);
    t.equal(out[2], Infinity, `${Dtype[dtype]}: +Inf decoded`);
    t.equal(out[4], -Infinity, `${Dtype[dtype]}: -Inf decoded`);
  }
  // 70000 overflows float16 (max 65504) so it becomes Inf on the wire and is counted on decode
  const overflow = encodeElements(new Float32Array([70000, 1]), 0, 2, Dtype.FLOAT16);
  t.equal(decodeElements(overflow, Dtype.FLOAT16, new Float32Array(2), 0), 1, "a float16 overflow arrives as one non-finite value");
});

t.test("decodeElements agrees with the scalar float16 conversion for all 65536 bit patterns", async (t) => {
  const bytes = new Uint8Array(65536 * 2);
  for (let h = 0; h < 65536; h++) {
    bytes[2 * h] = h & 0xff;
    bytes[2 * h + 1] = h >> 8;
  }
  const dst = new Float32Array(65536);
  const nonFinite = decodeElements(bytes, Dtype.FLOAT16, dst, 0);
  let mismatches = 0;
  for (let h = 0; h < 65536; h++) {
    const want = float16BitsToFloat32(h);
    const got = dst[h]!;
    if (!(Object.is(want, got) || (Number.isNaN(want) && Number.isNaN(got)))) mismatches++;
  }
  t.equal(mismatches, 0, "every half decodes to the same float32 (signed zeros, subnormals, Inf, NaN included)");
  t.equal(nonFinite, 2 * 1024, "the 2 × 1024 patterns with an all-ones exponent are counted as non-finite");
});

t.test("encodeElements' native float16 conversion agrees with the scalar one (rounding, subnormals, overflow, NaN)", async (t) => {
  // Every float32 exponent with mantissas that hit the rounding cases (ties, just below/above a
  // tie, the lowest and highest bits), both signs, plus pseudo-random bit patterns.
  const patterns: number[] = [];
  for (let exp = 0; exp < 256; exp++) {
    for (const mant of [0, 1, 0xfff, 0x1000, 0x1001, 0x2000, 0x3000, 0x7fffff, 0x400000, 0x3fffff, 0x401000]) {
      patterns.push((exp << 23) | mant, 0x80000000 | (exp << 23) | mant);
    }
  }
  let s = 12345;
  for (let i = 0; i < 200_000; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    patterns.push(s >>> 0);
  }
  const src = new Float32Array(new Uint32Array(patterns).buffer);
  const halves = new Uint16Array(encodeElements(src, 0, src.length, Dtype.FLOAT16).slice().buffer);
  let mismatches = 0;
  for (let i = 0; i < src.length; i++) {
    const want = float32ToFloat16Bits(src[i]!);
    const got = halves[i]!;
    const bothNaN = (want & 0x7c00) === 0x7c00 && (want & 0x3ff) !== 0 && (got & 0x7c00) === 0x7c00 && (got & 0x3ff) !== 0;
    if (want !== got && !bothNaN) mismatches++;
  }
  t.equal(mismatches, 0, `all ${src.length} patterns encode to the same half bits`);
});

t.test("decodeElements counts non-finite values wherever they sit in a long run", async (t) => {
  for (const dtype of [Dtype.FLOAT32, Dtype.FLOAT16, Dtype.BFLOAT16]) {
    const src = new Float32Array(1000).fill(0.5);
    t.equal(decodeElements(encodeElements(src, 0, 1000, dtype), dtype, new Float32Array(1000), 0), 0, `${Dtype[dtype]}: none`);
    src[0] = NaN;
    src[999] = -Infinity;
    src[500] = Infinity;
    t.equal(decodeElements(encodeElements(src, 0, 1000, dtype), dtype, new Float32Array(1000), 0), 3, `${Dtype[dtype]}: three`);
  }
});

t.test("decodeElements reads a Node Buffer at an odd byte offset (socket buffers are Buffers)", async (t) => {
  const values = new Float32Array([1.5, -3, 0.125, 7]);
  for (const dtype of [Dtype.FLOAT16, Dtype.BFLOAT16]) {
    const encoded = encodeElements(values, 0, values.length, dtype);
    const backing = Buffer.alloc(encoded.length + 1);
    backing.set(encoded, 1);
    const view = backing.subarray(1);
    t.equal(view.byteOffset % 2, 1, "the Buffer view sits at an odd offset");
    const out = new Float32Array(4);
    t.equal(decodeElements(view, dtype, out, 0), 0, `${Dtype[dtype]}: no non-finite values`);
    t.same(Array.from(out), Array.from(values), `${Dtype[dtype]}: decoded`);
  }
});

t.test("decodeElements finds a non-finite half at every position, length and alignment", async (t) => {
  let misses = 0;
  for (const dtype of [Dtype.FLOAT16, Dtype.BFLOAT16]) {
    for (const length of [1, 2, 3, 4, 5, 8, 9]) {
      for (const offset of [0, 2, 1, 3]) {
        for (let at = 0; at < length; at++) {
          const src = new Float32Array(length).fill(1);
          src[at] = at % 2 === 0 ? Infinity : NaN;
          const encoded = encodeElements(src, 0, length, dtype);
          const backing = new Uint8Array(encoded.length + offset);
          backing.set(encoded, offset);
          if (decodeElements(backing.subarray(offset), dtype, new Float32Array(length), 0) !== 1) misses++;
        }
      }
    }
  }
  t.equal(misses, 0, "exactly one non-finite value found every time");
});
