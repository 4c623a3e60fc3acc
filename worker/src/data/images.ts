/**
 * Turning 8-bit images into the float32 rows a Split holds (see catalog.ts for the normalisation).
 */
import type { Split } from "./dataset.ts";

export interface Normalisation {
  /** Per-channel mean and standard deviation of p / 255 (one entry per channel). */
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

/**
 * A Split from `count` images of `pixelsPerImage` bytes each, channel-last (HWC: the channel of a
 * pixel varies fastest), normalised per channel: x = (p / 255 - mean[c]) / std[c].
 */
export function normalisedSplit(pixels: Uint8Array, labels: Int32Array, norm: Normalisation): Split {
  const channels = norm.mean.length;
  const count = labels.length;
  if (norm.std.length !== channels) throw new Error("normalisation: mean and std differ in length");
  if (count > 0 && pixels.length % count !== 0) {
    throw new Error(`${pixels.length} pixel values do not divide into ${count} images`);
  }
  // Per channel: x = p * scale[c] + shift[c].
  const scale = norm.std.map((s) => 1 / (255 * s));
  const shift = norm.mean.map((m, c) => -m / norm.std[c]!);
  const x = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) {
    const c = i % channels;
    x[i] = pixels[i]! * scale[c]! + shift[c]!;
  }
  return { x, y: labels, count };
}
