/**
 * The plain JavaScript loops that simd.ts replaces, kept as the reference its results must equal
 * bit for bit (common/test/simd.test.ts) and as the baseline bench/kernels.ts times it against.
 */
import { float16BitsToFloat32 } from "../dtype.ts";
import type { AdamOptions, MomentumOptions } from "./simd.ts";

export function addInto(acc: Float32Array, src: Float32Array): void {
  for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + src[i]!;
}

export function sgdStep(param: Float32Array, grad: Float32Array, lr: number, scale: number, wd: number): void {
  for (let i = 0; i < param.length; i++) param[i] = param[i]! - lr * (grad[i]! * scale + wd * param[i]!);
}

/**
 * float16 `halves` into dst from `at` through dtype.ts's table of all 65,536 values; true if any is
 * non-finite.
 */
export function decodeFloat16(halves: Uint16Array, dst: Float32Array, at: number): boolean {
  let bad = false;
  for (let i = 0; i < halves.length; i++) {
    dst[at + i] = float16BitsToFloat32(halves[i]!);
    if ((halves[i]! & 0x7c00) === 0x7c00) bad = true;
  }
  return bad;
}

/** True if any of the float16 `halves` is infinite or NaN (its exponent bits all ones). */
export function anyNonFiniteFloat16(halves: Uint16Array): boolean {
  for (let i = 0; i < halves.length; i++) if ((halves[i]! & 0x7c00) === 0x7c00) return true;
  return false;
}

/**
 * Copies float32 `src` into dst; true if any value is non-finite. The check ORs the exponent bits:
 * adding the exponent's lowest bit to an all-ones exponent carries into bit 31.
 */
export function decodeFloat32(src: Float32Array, dst: Float32Array): boolean {
  dst.set(src);
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  let carry = 0;
  for (let i = 0; i < bits.length; i++) carry |= (bits[i]! & 0x7f800000) + 0x00800000;
  return (carry & 0x80000000) !== 0;
}

export function momentumStep(param: Float32Array, grad: Float32Array, v: Float32Array, o: MomentumOptions): void {
  const { lr, scale: s, weightDecay: wd, momentum: mu } = o;
  if (o.nesterov) {
    for (let i = 0; i < param.length; i++) {
      const d = grad[i]! * s + wd * param[i]!;
      const vi = mu * v[i]! + d;
      v[i] = vi;
      param[i] = param[i]! - lr * (d + mu * vi);
    }
  } else {
    for (let i = 0; i < param.length; i++) {
      const vi = mu * v[i]! + grad[i]! * s + wd * param[i]!;
      v[i] = vi;
      param[i] = param[i]! - lr * vi;
    }
  }
}

export function adamStep(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, o: AdamOptions): void {
  const { lr, scale: s, beta1: b1, beta2: b2, c1, c2, epsilon: eps, decay } = o;
  for (let i = 0; i < param.length; i++) {
    const g = grad[i]! * s;
    const mi = b1 * m[i]! + (1 - b1) * g;
    const vi = b2 * v[i]! + (1 - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i]! * decay - (lr * (mi / c1)) / (Math.sqrt(vi / c2) + eps);
  }
}
