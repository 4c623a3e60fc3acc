/**
 * A small seeded pseudo-random generator. Every worker process must build the identical synthetic
 * dataset, partition and batch order from the same seed, so nothing in data/ may use Math.random().
 *
 * Integer streams (nextUint32, nextInt, shuffle) use only 32-bit integer arithmetic and are
 * bit-identical on every platform. normal() also calls Math.log/Math.cos, which V8 implements in
 * software (a port of fdlibm), so it is identical wherever the same Node major version runs; that is
 * the deployment contract (all workers run the same image).
 */

/** Mixes a seed with a salt into a new 32-bit seed (splitmix32 finaliser), so that independent
 *  streams (centres, train set, test set, epoch k, ...) can be derived from one user seed. */
export function deriveSeed(seed: number, salt: number): number {
  let z = (seed ^ Math.imul(salt | 0, 0x9e3779b9)) >>> 0;
  z = (z + 0x9e3779b9) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * sfc32 (Chris Doty-Humphrey's Small Fast Counting generator): 128-bit state, passes PractRand,
 * minimum period 2^32 thanks to the counter. Seeded from one 32-bit integer through splitmix32.
 */
export class Random {
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  /** Box-Muller produces normals in pairs; the second one is kept for the next call. */
  #spareNormal: number | undefined = undefined;

  constructor(seed: number) {
    if (!Number.isInteger(seed)) throw new RangeError(`Random seed must be an integer, got ${seed}`);
    const s = seed >>> 0;
    this.#a = deriveSeed(s, 1);
    this.#b = deriveSeed(s, 2);
    this.#c = deriveSeed(s, 3);
    this.#d = 1; // the counter
    // Discard a few outputs so that nearby seeds decorrelate fully.
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  /** Uniform integer in [0, 2^32). */
  nextUint32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** Uniform float in [0, 1) with 32 random bits. */
  nextFloat(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n), without modulo bias (rejection sampling). n must be in [1, 2^32]. */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 4294967296) {
      throw new RangeError(`nextInt bound must be an integer in [1, 2^32], got ${n}`);
    }
    // Accept only draws below the largest multiple of n that fits in 2^32.
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const r = this.nextUint32();
      if (r < limit) return r % n;
    }
  }

  /** Standard normal N(0, 1) by the Box-Muller transform. */
  normal(): number {
    if (this.#spareNormal !== undefined) {
      const spare = this.#spareNormal;
      this.#spareNormal = undefined;
      return spare;
    }
    const u1 = 1 - this.nextFloat(); // (0, 1]: log(u1) is finite
    const u2 = this.nextFloat();
    const radius = Math.sqrt(-2 * Math.log(u1));
    const angle = 2 * Math.PI * u2;
    this.#spareNormal = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }

  /** Shuffles `array` in place (Fisher-Yates, every permutation equally likely) and returns it. */
  shuffle<T extends { length: number; [index: number]: unknown }>(array: T): T {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      const tmp = array[i];
      array[i] = array[j];
      array[j] = tmp;
    }
    return array;
  }
}
