/**
 * The data path's per-element loops as WebAssembly SIMD kernels (simd.wat): summing gradients, the
 * optimizers' steps, float16/bfloat16 conversion and the non-finite check. JavaScript runs these
 * loops one float64 at a time with a conversion on every load and store; four float32 lanes at
 * once (two float64 lanes for the optimizers) make them 1.2–2x faster here, scratch copies
 * included (bench/kernels.ts measures each against its loop).
 *
 * A kernel only sees its own memory, and the tensors live in JavaScript buffers (ordinary ones, or
 * shared ones on the server: server/src/store/shared-memory.ts). Rather than move every tensor into that
 * memory (and give up garbage collection for manual lifetimes), each call streams its arrays
 * through a small scratch area block by block: 16,384 elements at a time, which stay in the CPU
 * cache between the copy in, the kernel and the copy out. The copies are memcpy (copy-bytes.ts
 * says why not always TypedArray.prototype.set) and cost far less than the scalar loop they
 * replace. Each thread that imports this module has a kernel instance and scratch area of its own.
 *
 * The float16 encoder and decoder come from simd-fp16.wat instead when the process runs with
 * --experimental-wasm-fp16: the CPU's own conversion instructions, the same bits; the kernels are
 * 4–5x faster, encodeFloat16 and decodeFloat16 with their copies 2x and 1.5x (bench/kernels.ts).
 *
 * Results are bit-identical to the loops they replace (common/test/simd.test.ts).
 */
import { bytesOf, copyBytes } from "../copy-bytes.ts";
import type { EncodedValues, ValueFormat } from "../encoded-values.ts";
import { SIMD_FP16_WASM_BASE64 } from "./gen/simd-fp16-wasm.ts";
import { SIMD_WASM_BASE64 } from "./gen/simd-wasm.ts";

interface Exports {
  memory: WebAssembly.Memory;
  f16_decode(src: number, dst: number, n: number, add: 0 | 1): number;
  f32_any_nonfinite(src: number, n: number): number;
  u16_any_all_ones(src: number, n: number, mask: number): number;
  f32_add(acc: number, src: number, n: number): void;
  sgd(param: number, grad: number, n: number, lr: number, scale: number, wd: number): void;
  f32_to_f16(src: number, dst: number, n: number): void;
  bf16_decode(src: number, dst: number, n: number, add: 0 | 1): number;
  f32_to_bf16(src: number, dst: number, n: number): void;
  momentum(param: number, grad: number, vel: number, n: number, lr: number, scale: number, wd: number, mu: number, nesterov: number): void;
  adam(param: number, grad: number, m: number, v: number, n: number, lr: number, scale: number, b1: number, b2: number, c1: number, c2: number, eps: number, decay: number): void;
}

/** Elements per block: five float32 blocks and one 16-bit block fit in L2 with room to spare. */
export const BLOCK = 16_384;

const A = 0; // float32 blocks
const B = BLOCK * 4;
const C = BLOCK * 8;
const D = BLOCK * 12;
const H = BLOCK * 16; // 16-bit block
const E = BLOCK * 18; // float32: the next summand of a gradient sum
const SCRATCH_BYTES = BLOCK * 22;

function instantiate(): Exports {
  const bytes = Buffer.from(SIMD_WASM_BASE64, "base64");
  if (!WebAssembly.validate(bytes)) {
    throw new Error("this Node.js cannot run WebAssembly SIMD (Node 24 or newer on x86-64 or arm64 is required)");
  }
  const k = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports as unknown as Exports;
  const pages = Math.ceil(SCRATCH_BYTES / 65_536);
  const have = k.memory.buffer.byteLength / 65_536;
  if (have < pages) k.memory.grow(pages - have);
  return k;
}

/** The float16 conversions, which simd-fp16.wat provides too. */
type Float16Kernels = Pick<Exports, "f32_to_f16" | "f16_decode">;

/**
 * simd-fp16.wat's kernels on `memory`, or undefined when this process cannot run them: V8 accepts
 * the FP16 proposal's instructions only with --experimental-wasm-fp16 (common/src/node-flags.ts).
 */
function instantiateFp16(memory: WebAssembly.Memory): Float16Kernels | undefined {
  const bytes = Buffer.from(SIMD_FP16_WASM_BASE64, "base64");
  if (!WebAssembly.validate(bytes)) return undefined;
  return new WebAssembly.Instance(new WebAssembly.Module(bytes), { kernels: { memory } }).exports as unknown as Float16Kernels;
}

const k = instantiate();
const fp16 = instantiateFp16(k.memory);
/** The float16 conversions in use: the CPU's own instructions (via WebAssembly FP16), or portable SIMD. */
export const FLOAT16_CONVERSION: "hardware" | "portable" = fp16 === undefined ? "portable" : "hardware";
const f16: Float16Kernels = fp16 ?? k;
// The memory never grows after this, so these views stay valid.
const mem = k.memory.buffer;
const blockA = new Float32Array(mem, A, BLOCK);
const blockABytes = new Uint8Array(mem, A, BLOCK * 4);
const blockB = new Float32Array(mem, B, BLOCK);
const blockBBytes = new Uint8Array(mem, B, BLOCK * 4);
const blockCBytes = new Uint8Array(mem, C, BLOCK * 4);
const blockDBytes = new Uint8Array(mem, D, BLOCK * 4);
const blockEBytes = new Uint8Array(mem, E, BLOCK * 4);
const blockH = new Uint16Array(mem, H, BLOCK);
const blockHBytes = new Uint8Array(mem, H, BLOCK * 2);

function out(block: Float32Array, m: number): Float32Array {
  return m === BLOCK ? block : block.subarray(0, m);
}

/**
 * Zeroes the lanes of the last vector past `m` (vectors of `lanes` elements): the kernels work on
 * whole vectors, and a finite zero there cannot trip a non-finite check.
 */
function zeroSpareLanes(block: Float32Array | Uint16Array, m: number, lanes: 4 | 8): void {
  if (m % lanes !== 0) block.fill(0, m, (m + lanes - 1) & -lanes);
}

/** acc[i] += src[i] for every i (float32, the same rounding as the scalar loop). */
export function addInto(acc: Float32Array, src: Float32Array): void {
  if (src.length !== acc.length) throw new RangeError(`addInto: lengths differ (${acc.length} and ${src.length})`);
  for (let i = 0; i < acc.length; i += BLOCK) {
    const m = Math.min(BLOCK, acc.length - i);
    blockA.set(acc.subarray(i, i + m));
    blockB.set(src.subarray(i, i + m));
    k.f32_add(A, B, m);
    acc.set(out(blockA, m), i);
  }
}

/** One summand of a gradient: float32 values, or values still encoded as they arrived. */
export type GradientSummand = Float32Array | EncodedValues;

/** A summand's bytes and how they are encoded (a float32 array as its float32 bytes). */
export interface SummandBytes {
  format: ValueFormat;
  bytes: Uint8Array;
}

export function summandBytes(grads: readonly GradientSummand[]): SummandBytes[] {
  return grads.map((g) => (g instanceof Float32Array ? { format: "float32", bytes: bytesOf(g) } : { format: g.format, bytes: g.bytes(0, g.length) }));
}

/**
 * The optimizer steps take their gradient as the float32 sum of one or more summands, added left
 * to right (acc = g0; acc += g1; ...: the same rounding as addInto, one summand after the other).
 * A sync step's gradients are summed inside the step's own pass, block by block in the cache, so
 * the sum is never written to memory and read back; summands kept encoded are decoded there too.
 */
function loadGradientSum(grads: readonly SummandBytes[], i: number, m: number): void {
  loadSummand(grads[0]!, i, m, 0);
  for (let j = 1; j < grads.length; j++) loadSummand(grads[j]!, i, m, 1);
}

/**
 * Values [i, i + m) of `g` as float32 into block B (add 0) or added to it (add 1). Encoded values
 * are added as they are decoded; float32 ones go through block E.
 */
function loadSummand(g: SummandBytes, i: number, m: number, add: 0 | 1): void {
  if (g.format === "float32") {
    copyBytes(g.bytes, i * 4, (i + m) * 4, add === 0 ? blockBBytes : blockEBytes, 0);
    if (add === 1) k.f32_add(B, E, m);
  } else {
    copyBytes(g.bytes, i * 2, (i + m) * 2, blockHBytes, 0);
    zeroSpareLanes(blockH, m, 4);
    (g.format === "float16" ? f16.f16_decode : k.bf16_decode)(H, B, m, add);
  }
}

/** Float32 elements [i, i + m) of `from` (bytes) into a block, and back. */
function load(from: Uint8Array, i: number, m: number, block: Uint8Array): void {
  copyBytes(from, i * 4, (i + m) * 4, block, 0);
}

function store(block: Uint8Array, m: number, to: Uint8Array, i: number): void {
  copyBytes(block, 0, m * 4, to, i * 4);
}

function checkLengths(name: string, param: Float32Array, grads: readonly GradientSummand[], ...state: Float32Array[]): void {
  if (grads.length === 0) throw new RangeError(`${name}: no gradient`);
  for (const g of grads) {
    if (!(g instanceof Float32Array) && g.received !== g.length) throw new RangeError(`${name}: a summand holds ${g.received} of its ${g.length} values`);
  }
  for (const a of [...grads, ...state]) {
    if (a.length !== param.length) throw new RangeError(`${name}: lengths differ (${param.length} and ${a.length})`);
  }
}

/**
 * The elements a step updates: [from, to) of the tensor, the whole of it by default. The steps are
 * elementwise, so a tensor can be split into ranges that run on different threads (parallel-step.ts)
 * with the same results.
 */
export interface ElementRange {
  from: number;
  to: number;
}

function checkRange(name: string, length: number, range: ElementRange | undefined): ElementRange {
  if (range === undefined) return { from: 0, to: length };
  if (!(Number.isInteger(range.from) && Number.isInteger(range.to) && range.from >= 0 && range.from <= range.to && range.to <= length)) {
    throw new RangeError(`${name}: range [${range.from}, ${range.to}) is not within a tensor of ${length}`);
  }
  return range;
}

/** The blocks an optimizer's state arrays are loaded into, in the order its kernel takes them. */
const STATE_BLOCKS = [blockCBytes, blockDBytes];

/**
 * The pass every step makes over elements `range`: per block, the parameters into block A, the
 * gradients' sum into block B, each state array into STATE_BLOCKS, then `kernel(m)` on m elements,
 * and the parameters and state back.
 */
function stepPass(name: string, param: Float32Array, grads: readonly GradientSummand[], state: Float32Array[], range: ElementRange | undefined, kernel: (m: number) => void): void {
  checkLengths(name, param, grads, ...state);
  const { from, to } = checkRange(name, param.length, range);
  const p = bytesOf(param);
  const g = summandBytes(grads);
  const s = state.map(bytesOf);
  for (let i = from; i < to; i += BLOCK) {
    const m = Math.min(BLOCK, to - i);
    load(p, i, m, blockABytes);
    loadGradientSum(g, i, m);
    for (let j = 0; j < s.length; j++) load(s[j]!, i, m, STATE_BLOCKS[j]!);
    kernel(m);
    store(blockABytes, m, p, i);
    for (let j = 0; j < s.length; j++) store(STATE_BLOCKS[j]!, m, s[j]!, i);
  }
}

/**
 * param[i] ← param[i] − lr·(grad[i]·scale + wd·param[i]) with grad = Σgrads, evaluated in float64
 * exactly as the JavaScript expression is, then stored as float32.
 */
export function sgdStep(param: Float32Array, grads: readonly GradientSummand[], lr: number, scale: number, weightDecay: number, range?: ElementRange): void {
  stepPass("sgdStep", param, grads, [], range, (m) => k.sgd(A, B, m, lr, scale, weightDecay));
}

export interface MomentumOptions {
  lr: number;
  /** Applied to each gradient element as it is read (1/n to average a sum of n). */
  scale: number;
  weightDecay: number;
  momentum: number;
  nesterov: boolean;
}

export interface AdamOptions {
  lr: number;
  /** Applied to each gradient element as it is read (1/n to average a sum of n). */
  scale: number;
  beta1: number;
  beta2: number;
  /** Bias corrections 1 − β1^t and 1 − β2^t. */
  c1: number;
  c2: number;
  epsilon: number;
  /** Decoupled weight decay's factor 1 − lr·wd. */
  decay: number;
}

/**
 * SGD with momentum (momentum.ts's formulas, computed as its loops did): updates param and
 * velocity in place.
 */
export function momentumStep(param: Float32Array, grads: readonly GradientSummand[], velocity: Float32Array, o: MomentumOptions, range?: ElementRange): void {
  stepPass("momentumStep", param, grads, [velocity], range, (m) => k.momentum(A, B, C, m, o.lr, o.scale, o.weightDecay, o.momentum, o.nesterov ? 1 : 0));
}

/**
 * Adam with bias correction and decoupled weight decay (adam.ts's formulas, computed as its loop
 * did): updates param and the moments m and v in place.
 */
export function adamStep(param: Float32Array, grads: readonly GradientSummand[], m: Float32Array, v: Float32Array, o: AdamOptions, range?: ElementRange): void {
  stepPass("adamStep", param, grads, [m, v], range, (n) => k.adam(A, B, C, D, n, o.lr, o.scale, o.beta1, o.beta2, o.c1, o.c2, o.epsilon, o.decay));
}

/**
 * Decodes little-endian float16 `bytes` (any byte offset; an even length) into dst from element
 * `at`. Returns true if any value is infinite or NaN.
 */
export function decodeFloat16(bytes: Uint8Array, dst: Float32Array, at: number): boolean {
  return decodeHalves(bytes, dst, at, f16.f16_decode, "decodeFloat16");
}

/** The same for bfloat16. */
export function decodeBfloat16(bytes: Uint8Array, dst: Float32Array, at: number): boolean {
  return decodeHalves(bytes, dst, at, k.bf16_decode, "decodeBfloat16");
}

function decodeHalves(bytes: Uint8Array, dst: Float32Array, at: number, kernel: (src: number, dst: number, n: number, add: 0 | 1) => number, name: string): boolean {
  const count = bytes.length >>> 1;
  if (bytes.length % 2 !== 0) throw new RangeError(`${name}: odd byte length ${bytes.length}`);
  if (at < 0 || at + count > dst.length) throw new RangeError(`${name}: ${count} values at ${at} overrun ${dst.length}`);
  let bad = 0;
  for (let i = 0; i < count; i += BLOCK) {
    const m = Math.min(BLOCK, count - i);
    copyBytes(bytes, i * 2, (i + m) * 2, blockHBytes, 0);
    zeroSpareLanes(blockH, m, 4);
    bad |= kernel(H, A, m, 0);
    dst.set(out(blockA, m), at + i);
  }
  return bad !== 0;
}

/**
 * Copies little-endian float32 `bytes` (any byte offset; a multiple of 4 long) into dst from
 * element `at`. Returns true if any value is infinite or NaN.
 */
export function decodeFloat32(bytes: Uint8Array, dst: Float32Array, at: number): boolean {
  const count = bytes.length >>> 2;
  if (bytes.length % 4 !== 0) throw new RangeError(`decodeFloat32: byte length ${bytes.length} is not a multiple of 4`);
  if (at < 0 || at + count > dst.length) throw new RangeError(`decodeFloat32: ${count} values at ${at} overrun ${dst.length}`);
  let bad = 0;
  for (let i = 0; i < count; i += BLOCK) {
    const m = Math.min(BLOCK, count - i);
    copyBytes(bytes, i * 4, (i + m) * 4, blockABytes, 0);
    zeroSpareLanes(blockA, m, 4);
    bad |= k.f32_any_nonfinite(A, m);
    dst.set(out(blockA, m), at + i);
  }
  return bad !== 0;
}

const ALL_ONES_MASK = { float16: 0x7c00, bfloat16: 0x7f80 } as const;

/**
 * Whether any of the little-endian `format` values in `bytes` (any byte offset, whole values) is
 * infinite or NaN: the check of the decoders without the decoding, for values kept encoded.
 */
export function anyNonFinite(bytes: Uint8Array, format: ValueFormat): boolean {
  if (format === "float32") {
    if (bytes.length % 4 !== 0) throw new RangeError(`anyNonFinite: byte length ${bytes.length} is not a multiple of 4`);
    for (let i = 0; i < bytes.length; i += BLOCK * 4) {
      const b = Math.min(BLOCK * 4, bytes.length - i);
      copyBytes(bytes, i, i + b, blockABytes, 0);
      const m = b >>> 2;
      zeroSpareLanes(blockA, m, 4);
      if (k.f32_any_nonfinite(A, m) !== 0) return true;
    }
    return false;
  }
  if (bytes.length % 2 !== 0) throw new RangeError(`anyNonFinite: odd byte length ${bytes.length}`);
  const mask = ALL_ONES_MASK[format];
  for (let i = 0; i < bytes.length; i += BLOCK * 2) {
    const b = Math.min(BLOCK * 2, bytes.length - i);
    copyBytes(bytes, i, i + b, blockHBytes, 0);
    const m = b >>> 1;
    zeroSpareLanes(blockH, m, 8);
    if (k.u16_any_all_ones(H, m, mask) !== 0) return true;
  }
  return false;
}

/**
 * Encodes src as float16 into `out` (any byte offset; 2 bytes per element): round to nearest, ties
 * to even, the same bits as Float16Array.
 */
export function encodeFloat16(src: Float32Array, out: Uint8Array): void {
  encodeHalves(src, out, f16.f32_to_f16, "encodeFloat16");
}

/** The same for bfloat16 (round to nearest, ties to even; NaN stays NaN). */
export function encodeBfloat16(src: Float32Array, out: Uint8Array): void {
  encodeHalves(src, out, k.f32_to_bf16, "encodeBfloat16");
}

function encodeHalves(src: Float32Array, out: Uint8Array, kernel: (src: number, dst: number, n: number) => void, name: string): void {
  if (out.length !== src.length * 2) throw new RangeError(`${name}: needs ${src.length * 2} bytes, got ${out.length}`);
  for (let i = 0; i < src.length; i += BLOCK) {
    const m = Math.min(BLOCK, src.length - i);
    blockA.set(src.subarray(i, i + m));
    kernel(A, H, m);
    out.set(m === BLOCK ? blockHBytes : blockHBytes.subarray(0, m * 2), i * 2);
  }
}
