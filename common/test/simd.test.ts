import t from "tap";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { KERNEL_SOURCES, renderKernelsModule } from "../../scripts/lib/compile-kernels.ts";
import * as scalar from "../src/kernels/scalar.ts";
import * as simd from "../src/kernels/simd.ts";
import { bfloat16BitsToFloat32, decodeElements, encodeElements, float32ToBfloat16Bits } from "../src/dtype.ts";
import { bytesPerValue, EncodedValues, type ValueFormat } from "../src/encoded-values.ts";
import { Dtype } from "../src/gen/paramserver/v1/parameter_server_pb.js";

/** xorshift32 floats in ±scale, with specials and float16 subnormals mixed in. */
function values(n: number, seed: number, scale: number, specials = false): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  const odd = [0, -0, 1e-7, -3e-8, 6.1e-5, 65504, 65520, 1e-40, -1e-45, 3.4e38];
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const r = (s >>> 0) / 4294967296;
    out[i] = specials && i % 97 === 5 ? odd[i % odd.length]! : (r - 0.5) * 2 * scale * (i % 13 === 0 ? 1e-4 : 1);
  }
  return out;
}

/**
 * Equal bit patterns, element by element; the first difference if any. NaNs only need to be NaN:
 * Float16Array quiets signalling NaNs and the kernel keeps their payload, and NaN never gets past
 * the checks anyway.
 */
function firstDifference(a: Float32Array, b: Float32Array): string | undefined {
  if (a.length !== b.length) return `lengths ${a.length} and ${b.length}`;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return `element ${i}: ${a[i]} vs ${b[i]}`;
  return undefined;
}

/** `bytes` copied to `offset` bytes into a larger buffer (odd offsets are what socket reads give). */
function atOffset(bytes: Uint8Array, offset: number): Uint8Array {
  const big = new Uint8Array(offset + bytes.length + 5).fill(0xff);
  big.set(bytes, offset);
  return big.subarray(offset, offset + bytes.length);
}

// Lengths around the block size and the vector widths, where the edge handling lives.
const LENGTHS = [1, 3, 4, 7, 8, 9, 63, simd.BLOCK - 1, simd.BLOCK, simd.BLOCK + 5, 3 * simd.BLOCK + 8];

t.test("the committed kernel modules are what the .wat files compile to (run `make kernels` after editing one)", async (t) => {
  for (const source of KERNEL_SOURCES) {
    t.equal(readFileSync(source.module, "utf8"), await renderKernelsModule(source), fileURLToPath(source.wat));
  }
});

// Every test below checks whichever float16 conversion this process has. Run without V8's FP16
// flag (as tap runs it) they check simd.wat's portable kernels; the last test runs this file again
// with the flag, so that they check simd-fp16.wat's hardware conversions too.
const FP16_FLAG = "--experimental-wasm-fp16";

t.test("the float16 conversion is the hardware one exactly when V8's FP16 flag is on", async (t) => {
  t.equal(simd.FLOAT16_CONVERSION, process.execArgv.includes(FP16_FLAG) ? "hardware" : "portable");
});

t.test(`every test of this file passes with the hardware float16 conversion (node ${FP16_FLAG})`, { skip: process.execArgv.includes(FP16_FLAG) && "this is that run" }, async (t) => {
  const file = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, [...process.execArgv, FP16_FLAG, file], { encoding: "utf8", timeout: 120_000 });
  const failures = r.stdout.split("\n").filter((l) => /^\s*not ok/.test(l)).map((l) => l.trim());
  t.equal(r.status, 0, `exit code 0${failures.length > 0 ? `; failed: ${failures.slice(0, 10).join("; ")}` : ""}${r.stderr ? `; stderr: ${r.stderr.slice(-2000)}` : ""}`);
  t.match(r.stdout, /ok \d+ - the float16 conversion is the hardware one exactly when V8's FP16 flag is on/, "that run used the hardware conversion");
  t.same(failures, [], "and failed nothing");
});

t.test("addInto equals the scalar sum bit for bit", async (t) => {
  for (const n of LENGTHS) {
    const acc1 = values(n, n, 1, true);
    const acc2 = acc1.slice();
    const g = values(n, n + 1, 1e-3, true);
    scalar.addInto(acc1, g);
    simd.addInto(acc2, g);
    t.equal(firstDifference(acc2, acc1), undefined, `n=${n}`);
  }
  // Views into larger buffers: only the viewed range changes.
  const big = values(100, 3, 1);
  const before = big.slice();
  simd.addInto(big.subarray(10, 20), new Float32Array(10).fill(1));
  t.equal(big[9], before[9], "element before the view untouched");
  t.equal(big[20], before[20], "element after the view untouched");
  t.equal(big[10], Math.fround(before[10]! + 1), "viewed element summed");
  t.throws(() => simd.addInto(new Float32Array(4), new Float32Array(5)), /lengths differ/);
});

t.test("sgdStep equals the scalar step bit for bit, with and without weight decay", async (t) => {
  for (const n of LENGTHS) {
    for (const [lr, scale, wd] of [[0.01, 1, 0], [0.1, 0.25, 5e-4], [3e-3, 1 / 3, 1e-2]] as const) {
      const p1 = values(n, n + 7, 1, true);
      const p2 = p1.slice();
      const g = values(n, n + 9, 0.5, true);
      scalar.sgdStep(p1, g, lr, scale, wd);
      simd.sgdStep(p2, [g], lr, scale, wd);
      t.equal(firstDifference(p2, p1), undefined, `n=${n} lr=${lr} scale=${scale} wd=${wd}`);
    }
  }
  t.throws(() => simd.sgdStep(new Float32Array(4), [new Float32Array(3)], 1, 1, 0), /lengths differ/);
});

t.test("momentumStep equals the scalar loops bit for bit (classic and Nesterov)", async (t) => {
  for (const n of LENGTHS) {
    for (const nesterov of [false, true]) {
      const o = { lr: 0.05, scale: 0.25, weightDecay: 5e-4, momentum: 0.9, nesterov };
      const p1 = values(n, n + 1, 1, true);
      const v1 = values(n, n + 2, 0.1);
      const g = values(n, n + 3, 0.5, true);
      const p2 = p1.slice();
      const v2 = v1.slice();
      scalar.momentumStep(p1, g, v1, o);
      simd.momentumStep(p2, [g], v2, o);
      t.equal(firstDifference(p2, p1), undefined, `n=${n} nesterov=${nesterov}: parameters`);
      t.equal(firstDifference(v2, v1), undefined, `n=${n} nesterov=${nesterov}: velocity`);
    }
  }
  t.throws(() => simd.momentumStep(new Float32Array(2), [new Float32Array(2)], new Float32Array(3), { lr: 1, scale: 1, weightDecay: 0, momentum: 0.9, nesterov: false }), /lengths differ/);
});

t.test("adamStep equals the scalar loop bit for bit, with and without decoupled weight decay", async (t) => {
  for (const n of LENGTHS) {
    for (const [step, wd] of [[1, 0], [7, 0.01]] as const) {
      const lr = 1e-3;
      const o = { lr, scale: 1 / 3, beta1: 0.9, beta2: 0.999, c1: 1 - 0.9 ** step, c2: 1 - 0.999 ** step, epsilon: 1e-8, decay: 1 - lr * wd };
      const p1 = values(n, n + 4, 1, true);
      const m1 = values(n, n + 5, 1e-2);
      const v1 = values(n, n + 6, 1e-4).map(Math.abs);
      const g = values(n, n + 7, 0.5, true);
      const [p2, m2, v2] = [p1.slice(), m1.slice(), v1.slice()];
      scalar.adamStep(p1, g, m1, v1, o);
      simd.adamStep(p2, [g], m2, v2, o);
      t.equal(firstDifference(p2, p1), undefined, `n=${n} step=${step} wd=${wd}: parameters`);
      t.equal(firstDifference(m2, m1), undefined, `n=${n} step=${step} wd=${wd}: first moment`);
      t.equal(firstDifference(v2, v1), undefined, `n=${n} step=${step} wd=${wd}: second moment`);
    }
  }
});

t.test("the steps sum several gradients left to right inside their pass, as addInto then the step would", async (t) => {
  // A sync step's gradients in slot order: the sum must round exactly as acc = g0; acc += g1; ...
  const mo = { lr: 0.05, scale: 0.25, weightDecay: 5e-4, momentum: 0.9, nesterov: true };
  const ao = { lr: 1e-3, scale: 0.25, beta1: 0.9, beta2: 0.999, c1: 1 - 0.9 ** 3, c2: 1 - 0.999 ** 3, epsilon: 1e-8, decay: 1 - 1e-5 };
  for (const n of LENGTHS) {
    for (const count of [2, 4]) {
      const grads = Array.from({ length: count }, (_, j) => values(n, n * 31 + j, 0.5 * (j + 1), true));
      const before = grads.map((g) => g.slice());
      const sum = grads[0]!.slice();
      for (const g of grads.slice(1)) scalar.addInto(sum, g);
      const p0 = values(n, n + 11, 1, true);
      const s0 = values(n, n + 12, 0.1);

      const [p1, p2] = [p0.slice(), p0.slice()];
      scalar.sgdStep(p1, sum, 0.1, 0.25, 5e-4);
      simd.sgdStep(p2, grads, 0.1, 0.25, 5e-4);
      t.equal(firstDifference(p2, p1), undefined, `sgd n=${n} summands=${count}`);

      const [q1, q2, v1, v2] = [p0.slice(), p0.slice(), s0.slice(), s0.slice()];
      scalar.momentumStep(q1, sum, v1, mo);
      simd.momentumStep(q2, grads, v2, mo);
      t.equal(firstDifference(q2, q1), undefined, `nesterov n=${n} summands=${count}: parameters`);
      t.equal(firstDifference(v2, v1), undefined, `nesterov n=${n} summands=${count}: velocity`);

      const [r1, r2, m1, m2, w1, w2] = [p0.slice(), p0.slice(), s0.slice(), s0.slice(), s0.map(Math.abs), s0.map(Math.abs)];
      scalar.adamStep(r1, sum, m1, w1, ao);
      simd.adamStep(r2, grads, m2, w2, ao);
      t.equal(firstDifference(r2, r1), undefined, `adam n=${n} summands=${count}: parameters`);
      t.equal(firstDifference(m2, m1), undefined, `adam n=${n} summands=${count}: first moment`);
      t.equal(firstDifference(w2, w1), undefined, `adam n=${n} summands=${count}: second moment`);

      t.ok(grads.every((g, j) => firstDifference(g, before[j]!) === undefined), `n=${n} summands=${count}: the gradients are not modified`);
    }
  }
  t.throws(() => simd.sgdStep(new Float32Array(4), [new Float32Array(4), new Float32Array(3)], 1, 1, 0), /sgdStep: lengths differ \(4 and 3\)/);
  t.throws(() => simd.adamStep(new Float32Array(4), [], new Float32Array(4), new Float32Array(4), ao), /adamStep: no gradient/);
});

/** `values` encoded as `format` and kept, as the server keeps a pushed gradient. */
function kept(values: Float32Array, format: ValueFormat): EncodedValues {
  const dtype = { float32: Dtype.FLOAT32, float16: Dtype.FLOAT16, bfloat16: Dtype.BFLOAT16 }[format];
  const bytes = encodeElements(values, 0, values.length, dtype);
  const e = new EncodedValues(format, values.length, new Uint8Array(bytes.length));
  e.append(bytes.subarray(0, 2 * bytesPerValue(format) * Math.floor(values.length / 3)));
  e.append(bytes.subarray(2 * bytesPerValue(format) * Math.floor(values.length / 3)));
  return e;
}

t.test("the steps decode summands kept encoded as they sum them: the same bits as decoding first", async (t) => {
  const mo = { lr: 0.05, scale: 1 / 3, weightDecay: 5e-4, momentum: 0.9, nesterov: false };
  for (const n of LENGTHS) {
    for (const format of ["float32", "float16", "bfloat16"] as const) {
      const raw = [values(n, n + 41, 0.5, true), values(n, n + 42, 2e-5, true), values(n, n + 43, 3, true)].map((g) =>
        g.map((x) => (Number.isFinite(x) && Math.abs(x) < 6e4 ? x : 1)),
      );
      const encoded = raw.map((g) => kept(g, format));
      // What the server did before: decode each into float32, then sum in order.
      const decoded = encoded.map((e) => {
        const out = new Float32Array(n);
        const dtype = { float32: Dtype.FLOAT32, float16: Dtype.FLOAT16, bfloat16: Dtype.BFLOAT16 }[format];
        decodeElements(e.bytes(0, n), dtype, out, 0);
        return out;
      });
      const sum = decoded[0]!.slice();
      for (const g of decoded.slice(1)) scalar.addInto(sum, g);
      const p0 = values(n, n + 44, 1, true);
      const [p1, p2, v1, v2] = [p0.slice(), p0.slice(), new Float32Array(n), new Float32Array(n)];
      scalar.momentumStep(p1, sum, v1, mo);
      // Mixed: a float32 summand first, then two kept encoded.
      simd.momentumStep(p2, [decoded[0]!, encoded[1]!, encoded[2]!], v2, mo);
      t.equal(firstDifference(p2, p1), undefined, `n=${n} ${format}: parameters`);
      t.equal(firstDifference(v2, v1), undefined, `n=${n} ${format}: velocity`);
      const [q1, q2] = [p0.slice(), p0.slice()];
      scalar.sgdStep(q1, sum, 0.1, 1 / 3, 0);
      simd.sgdStep(q2, encoded, 0.1, 1 / 3, 0);
      t.equal(firstDifference(q2, q1), undefined, `n=${n} ${format}: every summand kept encoded`);
    }
  }
  const partial = new EncodedValues("float16", 8, new Uint8Array(16));
  partial.append(new Uint8Array(6));
  t.throws(() => simd.sgdStep(new Float32Array(8), [partial], 1, 1, 0), /sgdStep: a summand holds 3 of its 8 values/);
});

t.test("a step run in element ranges equals the whole step, in ordinary and in shared memory", async (t) => {
  const n = 3 * simd.BLOCK + 8;
  const mo = { lr: 0.05, scale: 0.5, weightDecay: 5e-4, momentum: 0.9, nesterov: true };
  const ao = { lr: 0.01, scale: 0.5, beta1: 0.9, beta2: 0.999, c1: 0.1, c2: 0.001, epsilon: 1e-8, decay: 1 - 1e-4 };
  const inShared = (a: Float32Array) => {
    const s = new Float32Array(new SharedArrayBuffer(a.byteLength));
    s.set(a);
    return s;
  };
  const keptShared = (g: Float32Array) => {
    const e = kept(g, "float16");
    return EncodedValues.received("float16", Uint8Array.from(e.bytes(0, g.length)));
  };
  for (const shared of [false, true]) {
    const p0 = values(n, 51, 1, true);
    const grads = [values(n, 52, 0.5), values(n, 53, 0.5)];
    const kept16 = kept(grads[1]!, "float16");
    // Cut points inside a block, at a block's edge, and an empty range.
    const ranges = [{ from: 0, to: 5 }, { from: 5, to: simd.BLOCK }, { from: simd.BLOCK, to: simd.BLOCK }, { from: simd.BLOCK, to: n }];
    const whole = { p: p0.slice(), v: new Float32Array(n), m: new Float32Array(n), w: new Float32Array(n) };
    const parts = shared
      ? { p: inShared(p0), v: inShared(new Float32Array(n)), m: inShared(new Float32Array(n)), w: inShared(new Float32Array(n)) }
      : { p: p0.slice(), v: new Float32Array(n), m: new Float32Array(n), w: new Float32Array(n) };
    const g = shared ? [inShared(grads[0]!), keptShared(grads[1]!)] : [grads[0]!, kept16];
    simd.sgdStep(whole.p, [grads[0]!, kept16], 0.1, 0.5, 1e-4);
    simd.momentumStep(whole.p, [grads[0]!, kept16], whole.v, mo);
    simd.adamStep(whole.p, [grads[0]!, kept16], whole.m, whole.w, ao);
    for (const range of ranges) simd.sgdStep(parts.p, g, 0.1, 0.5, 1e-4, range);
    for (const range of ranges) simd.momentumStep(parts.p, g, parts.v, mo, range);
    for (const range of ranges) simd.adamStep(parts.p, g, parts.m, parts.w, ao, range);
    const what = shared ? "shared memory" : "ordinary memory";
    t.equal(firstDifference(parts.p, whole.p), undefined, `${what}: parameters`);
    t.equal(firstDifference(parts.v, whole.v), undefined, `${what}: velocity`);
    t.equal(firstDifference(parts.m, whole.m), undefined, `${what}: first moment`);
    t.equal(firstDifference(parts.w, whole.w), undefined, `${what}: second moment`);
  }
  for (const range of [{ from: -1, to: 2 }, { from: 3, to: 2 }, { from: 0, to: 9 }, { from: 0.5, to: 2 }]) {
    t.throws(() => simd.sgdStep(new Float32Array(8), [new Float32Array(8)], 1, 1, 0, range), /sgdStep: range \[.*\) is not within a tensor of 8/, `${JSON.stringify(range)} refused`);
  }
});

t.test("anyNonFinite finds infinity and NaN in every format, at any byte offset and position", async (t) => {
  const bits = new Uint16Array(65536);
  for (let i = 0; i < bits.length; i++) bits[i] = i;
  for (const [format, exponent] of [["float16", 0x7c00], ["bfloat16", 0x7f80]] as const) {
    // Every pattern alone, in a block of finite ones: the check must agree with the exponent test.
    let wrong = 0;
    const one = new Uint16Array(24).fill(format === "float16" ? 0x3c00 : 0x3f80);
    for (let h = 0; h < 65536; h += 7) {
      const at = h % one.length;
      one[at] = h;
      const expected = format === "float16" ? scalar.anyNonFiniteFloat16(one) : (h & exponent) === exponent;
      if (simd.anyNonFinite(new Uint8Array(one.buffer), format) !== expected) wrong++;
      one[at] = format === "float16" ? 0x3c00 : 0x3f80;
    }
    t.equal(wrong, 0, `${format}: every 7th pattern, alone among finite values`);
    const all = new Uint8Array(bits.buffer);
    for (const offset of [0, 1, 3]) {
      t.equal(simd.anyNonFinite(atOffset(all, offset), format), true, `${format}: all patterns at byte offset ${offset}`);
    }
  }
  for (const n of LENGTHS) {
    const finite = values(n, n + 50, 1e4).map((x) => (Number.isFinite(x) ? x : 0));
    for (const format of ["float32", "float16", "bfloat16"] as const) {
      const dtype = { float32: Dtype.FLOAT32, float16: Dtype.FLOAT16, bfloat16: Dtype.BFLOAT16 }[format];
      t.equal(simd.anyNonFinite(atOffset(encodeElements(finite, 0, n, dtype), 1), format), false, `n=${n} ${format}: finite`);
      const last = finite.slice();
      last[n - 1] = Number.NEGATIVE_INFINITY; // in the last, padded vector
      t.equal(simd.anyNonFinite(atOffset(encodeElements(last, 0, n, dtype), 3), format), true, `n=${n} ${format}: -Infinity last`);
    }
  }
  // One non-finite value at each position of arrays long enough for the kernels' four-vector loop:
  // each of its four flags, and the single-vector tail after it, must see it.
  for (const n of [40, 64, 65, 100, 131]) {
    for (const format of ["float32", "float16", "bfloat16"] as const) {
      const dtype = { float32: Dtype.FLOAT32, float16: Dtype.FLOAT16, bfloat16: Dtype.BFLOAT16 }[format];
      const finite = new Float32Array(n).fill(1.5);
      const missed: number[] = [];
      for (let p = 0; p < n; p++) {
        finite[p] = p % 2 === 0 ? Number.POSITIVE_INFINITY : Number.NaN;
        if (!simd.anyNonFinite(encodeElements(finite, 0, n, dtype), format)) missed.push(p);
        if (format === "float32" && !simd.decodeFloat32(new Uint8Array(finite.buffer.slice(0)), new Float32Array(n), 0)) missed.push(-p - 1);
        finite[p] = 1.5;
      }
      t.same(missed, [], `n=${n} ${format}: found at every position`);
    }
  }
  t.throws(() => simd.anyNonFinite(new Uint8Array(3), "float16"), /odd byte length 3/);
  t.throws(() => simd.anyNonFinite(new Uint8Array(6), "float32"), /not a multiple of 4/);
});

t.test("decodeFloat16 decodes all 65,536 bit patterns exactly, at any byte offset", async (t) => {
  const bits = new Uint16Array(65536);
  for (let i = 0; i < bits.length; i++) bits[i] = i;
  const expected = new Float32Array(65536);
  expected.set(new Float16Array(bits.buffer));
  for (const offset of [0, 1, 2, 3]) {
    const dst = new Float32Array(65536 + 3);
    const bad = simd.decodeFloat16(atOffset(new Uint8Array(bits.buffer), offset), dst, 3);
    t.equal(bad, true, "Inf and NaN patterns are reported");
    t.equal(firstDifference(dst.subarray(3), expected), undefined, `byte offset ${offset}`);
    t.equal(dst[0], 0, "nothing written before `at`");
  }
});

t.test("decodeFloat16 reports non-finite values exactly when there are some", async (t) => {
  for (const n of LENGTHS) {
    const finite = new Float16Array(values(n, n, 100));
    const dst = new Float32Array(n);
    t.equal(simd.decodeFloat16(new Uint8Array(finite.buffer), dst, 0), false, `n=${n}: all finite`);
    const ref = new Float32Array(n);
    scalar.decodeFloat16(new Uint16Array(finite.buffer), ref, 0);
    t.equal(firstDifference(dst, ref), undefined, `n=${n}: same values as the table`);
    for (const special of [Infinity, -Infinity, NaN]) {
      const withOne = finite.slice();
      withOne[n - 1] = special; // the last element: the padded tail must not hide it
      t.equal(simd.decodeFloat16(new Uint8Array(withOne.buffer), dst, 0), true, `n=${n}: ${special} at the end found`);
    }
  }
  t.throws(() => simd.decodeFloat16(new Uint8Array(3), new Float32Array(2), 0), /odd byte length/);
  t.throws(() => simd.decodeFloat16(new Uint8Array(8), new Float32Array(4), 1), /overrun/);
});

t.test("decodeFloat32 copies any byte offset and reports non-finite values", async (t) => {
  for (const n of LENGTHS) {
    const src = values(n, n + 3, 10, true);
    for (const offset of [0, 1, 3]) {
      const dst = new Float32Array(n + 2).fill(7);
      const bad = simd.decodeFloat32(atOffset(new Uint8Array(src.buffer), offset), dst, 1);
      t.equal(bad, false, `n=${n} offset=${offset}: finite`);
      if (firstDifference(dst.subarray(1, n + 1), src) !== undefined) t.fail(`n=${n} offset=${offset}: ${firstDifference(dst.subarray(1, n + 1), src)}`);
      t.same([dst[0], dst[n + 1]], [7, 7], `n=${n} offset=${offset}: neighbours untouched`);
    }
    for (const special of [Infinity, -Infinity, NaN]) {
      const withOne = src.slice();
      withOne[n - 1] = special;
      t.equal(simd.decodeFloat32(new Uint8Array(withOne.buffer), new Float32Array(n), 0), true, `n=${n}: ${special} at the end found`);
    }
  }
  t.throws(() => simd.decodeFloat32(new Uint8Array(6), new Float32Array(2), 0), /multiple of 4/);
});

t.test("encodeFloat16 gives the bits Float16Array gives, at any byte offset", async (t) => {
  // Every float32 exponent with assorted mantissas (ties included), both signs, and the specials.
  const sweep: number[] = [];
  const bits = new Uint32Array(1);
  const f = new Float32Array(bits.buffer);
  for (let e = 0; e < 256; e++) {
    for (const m of [0, 1, 0xfff, 0x1000, 0x1fff, 0x2000, 0x3000, 0x7fffff, 0x400000, 0x123456]) {
      for (const sign of [0, 0x80000000]) {
        bits[0] = (sign | (e << 23) | m) >>> 0;
        sweep.push(f[0]!);
      }
    }
  }
  const inputs = [Float32Array.from(sweep), values(3 * simd.BLOCK + 5, 11, 70000, true), values(9, 12, 1e-6)];
  for (const src of inputs) {
    const expected = new Uint8Array(new Float16Array(src).buffer);
    for (const offset of [0, 1]) {
      const out = atOffset(new Uint8Array(src.length * 2), offset);
      simd.encodeFloat16(src, out);
      const a = new Uint16Array(out.slice().buffer);
      const b = new Uint16Array(expected.slice().buffer);
      // NaN only needs to stay NaN (the kernel makes every NaN the canonical 0x7e00).
      const diff = a.findIndex((h, i) => h !== b[i] && !((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0 && (b[i]! & 0x7c00) === 0x7c00 && (b[i]! & 0x3ff) !== 0));
      t.equal(diff, -1, `${src.length} values at byte offset ${offset}${diff >= 0 ? `: ${src[diff]} → 0x${a[diff]!.toString(16)}, expected 0x${b[diff]!.toString(16)}` : ""}`);
    }
  }
  t.throws(() => simd.encodeFloat16(new Float32Array(3), new Uint8Array(5)), /needs 6 bytes/);
});

t.test("bfloat16: encoding rounds as float32ToBfloat16Bits does and decoding is exact", async (t) => {
  const src = values(3 * simd.BLOCK + 7, 21, 1e30, true);
  src[5] = NaN;
  src[6] = -Infinity;
  src[7] = 3.3895313892515355e38; // rounds up into infinity
  new Uint32Array(src.buffer)[8] = 0x7f80ffff; // a NaN whose rounding would carry into the exponent
  const out = atOffset(new Uint8Array(src.length * 2), 1);
  simd.encodeBfloat16(src, out);
  const got = new Uint16Array(out.slice().buffer);
  const diff = got.findIndex((h, i) => h !== float32ToBfloat16Bits(src[i]!));
  t.equal(diff, -1, diff >= 0 ? `${src[diff]} → 0x${got[diff]!.toString(16)}, expected 0x${float32ToBfloat16Bits(src[diff]!).toString(16)}` : "every element");
  t.ok(Number.isNaN(bfloat16BitsToFloat32(got[8]!)), "the NaN stayed a NaN");

  const dst = new Float32Array(got.length + 1);
  const bad = simd.decodeBfloat16(atOffset(new Uint8Array(got.buffer), 3), dst, 1);
  t.equal(bad, true, "NaN and infinity reported");
  const wrong = got.findIndex((h, i) => !Object.is(dst[i + 1], bfloat16BitsToFloat32(h)) && !Number.isNaN(dst[i + 1]!));
  t.equal(wrong, -1, "decoded values equal bfloat16BitsToFloat32");
  const finite = new Uint16Array([0x3f80, 0x0001, 0x8000, 0x7f7f, 0xff7f]);
  t.equal(simd.decodeBfloat16(new Uint8Array(finite.buffer), new Float32Array(5), 0), false, "finite values, the largest included, are not reported");
});
