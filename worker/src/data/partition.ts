/**
 * Data-parallel sharding: which training examples make up each part of an epoch's data, in which
 * order a worker visits them, and copying those rows out. Everything is a pure function of its
 * arguments, so workers need no coordination beyond agreeing on (count, parts, seed) — and the
 * server, which hands out (epoch, part, parts), only has to keep count of who trains which part.
 */
import type { Split } from "./dataset.ts";
import { Random, deriveSeed } from "./random.ts";

/** Salts separating the partition shuffle from the per-epoch shuffles of the same seed. */
const PARTITION_SALT = 0x5107;
const EPOCH_SALT = 0xe90c;

/**
 * The example indices of part `part` of `parts` (an epoch's data is cut into one part per worker
 * live when the epoch begins; the server's NextAssignment says which part a worker trains): a
 * seeded shuffle of 0 .. count-1, cut into `parts` contiguous pieces whose sizes differ by at most
 * one (part p is [floor(p*count/P), floor((p+1)*count/P)) of the shuffled order). Over all parts
 * they are disjoint and cover every index exactly once. Shuffling first avoids handing one worker a
 * block of similar examples if the stored order is sorted (e.g. by class).
 */
export function sliceForPart(count: number, part: number, parts: number, seed: number): Int32Array {
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`count must be an integer >= 0, got ${count}`);
  if (!Number.isInteger(parts) || parts < 1) {
    throw new RangeError(`parts must be an integer >= 1, got ${parts}`);
  }
  if (!Number.isInteger(part) || part < 0 || part >= parts) {
    throw new RangeError(`part must be an integer in [0, ${parts}), got ${part}`);
  }
  const order = new Random(deriveSeed(seed, PARTITION_SALT)).shuffle(identity(count));
  // Math.floor of exact integer products: no rounding issue below 2^53.
  const start = Math.floor((part * count) / parts);
  const end = Math.floor(((part + 1) * count) / parts);
  return order.slice(start, end);
}

/**
 * The batches of one epoch over `slice`: a fresh seeded shuffle per (seed, epoch), cut into
 * floor(slice.length / batchSize) FULL batches. The remainder (fewer than batchSize examples) is
 * DROPPED for this epoch, so every gradient is a mean over exactly batchSize examples (same noise
 * scale, same cost per step); because the shuffle changes each epoch, a different remainder is
 * dropped each time and no example is permanently excluded.
 *
 * Throws if the slice holds fewer than batchSize examples (the epoch would have no step at all).
 * The returned arrays are views into one buffer owned by the caller.
 */
export function epochBatches(slice: Int32Array, batchSize: number, seed: number, epoch: number): Int32Array[] {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`batchSize must be an integer >= 1, got ${batchSize}`);
  }
  if (!Number.isInteger(epoch) || epoch < 0) throw new RangeError(`epoch must be an integer >= 0, got ${epoch}`);
  if (slice.length < batchSize) {
    throw new RangeError(`the slice holds ${slice.length} examples, fewer than one batch of ${batchSize}`);
  }
  const order = new Random(deriveSeed(deriveSeed(seed, EPOCH_SALT), epoch)).shuffle(slice.slice());
  const batches: Int32Array[] = [];
  for (let start = 0; start + batchSize <= order.length; start += batchSize) {
    batches.push(order.subarray(start, start + batchSize));
  }
  return batches;
}

/** Copies the rows `indices` of `split` (features and labels, in that order) into a new Split. */
export function gather(split: Split, indices: ArrayLike<number>): Split {
  if (split.count === 0) {
    if (indices.length > 0) throw new RangeError("gather: the split is empty");
    return { x: new Float32Array(0), y: new Int32Array(0), count: 0 };
  }
  const features = split.x.length / split.count;
  if (!Number.isInteger(features)) {
    throw new Error(`gather: x has ${split.x.length} values, not a multiple of count ${split.count}`);
  }
  const x = new Float32Array(indices.length * features);
  const y = new Int32Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const row = indices[i]!;
    if (!(Number.isInteger(row) && row >= 0 && row < split.count)) {
      throw new RangeError(`gather: index ${row} is outside [0, ${split.count})`);
    }
    x.set(split.x.subarray(row * features, (row + 1) * features), i * features);
    y[i] = split.y[row]!;
  }
  return { x, y, count: indices.length };
}

function identity(count: number): Int32Array {
  const indices = new Int32Array(count);
  for (let i = 0; i < count; i++) indices[i] = i;
  return indices;
}
