/**
 * Micro-benchmark of the SIMD kernels (common/src/kernels/simd.ts) against the JavaScript loops they
 * replace (scalar.ts), on one model's worth of elements in ordinary buffers, as the server and the
 * worker call them. Prints the median of R runs per kernel and the speed-up; then the sync step as
 * the server runs it, in shared memory, on one thread and split across helper threads
 * (server/src/optimizer/parallel-step.ts).
 *
 *   node bench/kernels.ts [--elements 11173962] [--runs 15]
 */
import { parseArgs } from "node:util";
import * as scalar from "@distributed-ps/common/kernels/scalar.ts";
import * as simd from "@distributed-ps/common/kernels/simd.ts";
import { EncodedValues } from "@distributed-ps/common/encoded-values.ts";
import { ParallelStep } from "../server/src/optimizer/parallel-step.ts";
import { sharedBytes, sharedFloat32 } from "../server/src/store/shared-memory.ts";

const { values: a } = parseArgs({ options: { elements: { type: "string", default: "11173962" }, runs: { type: "string", default: "15" } } });
const n = Number(a.elements);
const runs = Number(a.runs);
if (!Number.isInteger(n) || n <= 0 || !Number.isInteger(runs) || runs <= 0) throw new Error(`--elements and --runs take positive integers (got ${a.elements}, ${a.runs})`);

// Gradient-like values: mostly small, some in float16's subnormal range.
const x = new Float32Array(n);
const y = new Float32Array(n);
for (let i = 0; i < n; i++) {
  x[i] = Math.sin(i) * 1e-2;
  y[i] = Math.cos(i * 0.7) * (i % 64 === 0 ? 1e-6 : 1e-3);
}
const halves = new Float16Array(y);
const halfBytes = new Uint8Array(halves.buffer);
const halfBits = new Uint16Array(halves.buffer);
const dst = new Float32Array(n);
const xBytes = new Uint8Array(x.buffer);
const f16out = new Float16Array(n);
const x2 = new Float32Array(n);
const v2 = new Float32Array(n);
const mo = { lr: 1e-9, scale: 0.25, weightDecay: 0, momentum: 0.9, nesterov: false };
const ao = { lr: 1e-9, scale: 0.25, beta1: 0.9, beta2: 0.999, c1: 0.1, c2: 0.001, epsilon: 1e-8, decay: 1 };
const f16bytes = new Uint8Array(n * 2);

function median(f: () => void): number {
  for (let w = 0; w < 3; w++) f();
  const t: number[] = [];
  for (let r = 0; r < runs; r++) {
    const s = performance.now();
    f();
    t.push(performance.now() - s);
  }
  return t.sort((p, q) => p - q)[t.length >> 1]!;
}

// A sync step of four float16 gradients, as the server applies it. Before: each decoded into a
// float32 buffer of its own, summed into the first, then the SGD step; now: kept encoded and
// decoded, summed and applied in the step's one pass.
const pushed = [0, 1, 2, 3].map((j) => {
  const bytes = new Uint8Array(new Float16Array(y.map((v) => v * (j + 1))).buffer);
  const kept = new EncodedValues("float16", n, new Uint8Array(n * 2));
  kept.append(bytes);
  return { bytes, bits: new Uint16Array(bytes.buffer), kept };
});
const decoded = pushed.map(() => new Float32Array(n));
function stepOnePassEach(decode: (p: (typeof pushed)[number], into: Float32Array) => void, add: (a: Float32Array, b: Float32Array) => void, sgd: () => void) {
  pushed.forEach((p, j) => decode(p, decoded[j]!));
  for (const d of decoded.slice(1)) add(decoded[0]!, d);
  sgd();
}
const scalarStep = () => stepOnePassEach((p, d) => scalar.decodeFloat16(p.bits, d, 0), scalar.addInto, () => scalar.sgdStep(dst, decoded[0]!, 1e-9, 0.25, 0));
const simdEachStep = () => stepOnePassEach((p, d) => simd.decodeFloat16(p.bytes, d, 0), simd.addInto, () => simd.sgdStep(dst, [decoded[0]!], 1e-9, 0.25, 0));
const keptSums = pushed.map((p) => p.kept);

const rows: [string, number, number][] = [
  ["sum of two gradients (acc += g)", median(() => scalar.addInto(dst, y)), median(() => simd.addInto(dst, y))],
  ["SGD step", median(() => scalar.sgdStep(dst, y, 1e-9, 0.25, 0)), median(() => simd.sgdStep(dst, [y], 1e-9, 0.25, 0))],
  ["momentum step", median(() => scalar.momentumStep(dst, y, x2, mo)), median(() => simd.momentumStep(dst, [y], x2, mo))],
  ["Adam step", median(() => scalar.adamStep(dst, y, x2, v2, ao)), median(() => simd.adamStep(dst, [y], x2, v2, ao))],
  ["float16 decode + NaN/Inf check", median(() => scalar.decodeFloat16(halfBits, dst, 0)), median(() => simd.decodeFloat16(halfBytes, dst, 0))],
  ["float16 encode (vs Float16Array)", median(() => f16out.set(x)), median(() => simd.encodeFloat16(x, f16bytes))],
  ["float32 copy + NaN/Inf check", median(() => scalar.decodeFloat32(x, dst)), median(() => simd.decodeFloat32(xBytes, dst, 0))],
  ["float16 NaN/Inf check alone", median(() => scalar.anyNonFiniteFloat16(halfBits)), median(() => simd.anyNonFinite(halfBytes, "float16"))],
  ["sync step, 4 float16 gradients + SGD", median(scalarStep), median(() => simd.sgdStep(dst, keptSums, 1e-9, 0.25, 0))],
];
const simdEach = median(simdEachStep);
console.log(`${n.toLocaleString("en-US")} elements, median of ${runs} runs; float16 conversion: ${simd.FLOAT16_CONVERSION}${simd.FLOAT16_CONVERSION === "portable" ? " (node --experimental-wasm-fp16 bench/kernels.ts for the hardware one)" : ""}`);
console.log("kernel                             JavaScript ms  SIMD ms  speed-up");
for (const [name, js, v] of rows) console.log(`${name.padEnd(37)}${js.toFixed(2).padStart(11)}${v.toFixed(2).padStart(9)}${(js / v).toFixed(2).padStart(9)}x`);
console.log(`(the sync step with the SIMD kernels one pass at a time — decode each, sum, step: ${simdEach.toFixed(2)} ms)`);

// The same sync step in shared memory, as the server keeps parameters and gradients, on its thread
// alone and with helper threads (one per further core, as STEP_THREADS does by default).
const sharedParam = sharedFloat32(n);
const sharedKept = pushed.map((p) => {
  const kept = new EncodedValues("float16", n, sharedBytes(n * 2));
  kept.append(p.bytes);
  return kept;
});
const job = { kind: "sgd", param: sharedParam, grads: sharedKept, lr: 1e-9, scale: 0.25, weightDecay: 0 } as const;
const alone = new ParallelStep({ helpers: 0 });
const together = new ParallelStep({ helpers: Math.max(1, new ParallelStep({ helpers: "auto" }).helpers) });
const oneThread = median(() => alone.run([job]));
together.run([job]);
await new Promise((r) => setTimeout(r, 200)); // the helpers start
const threads = median(() => together.run([job]));
console.log(
  `(the sync step in shared memory: ${oneThread.toFixed(2)} ms on one thread, ${threads.toFixed(2)} ms on ${together.helpers + 1} threads` +
    ` — ${together.unitsByHelpers} of its units ran on helpers)`,
);
await together.close();
