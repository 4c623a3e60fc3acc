/**
 * Training-time data augmentation for image batches: the usual CIFAR recipe, a random crop with
 * 4-pixel zero padding and a random horizontal flip. Applied to each gathered TRAINING batch only;
 * evaluation reads the test split directly and never goes through here.
 *
 * Randomness: one seeded stream per batch, derived from the dataset's augmentation seed and the
 * batch's example indices. So a run is reproducible, workers (which own different examples) draw
 * different crops, an example gets a different crop each epoch (the per-epoch shuffle puts it in a
 * different batch), and a batch recomputed after a refused push sees exactly the same images.
 */
import type { Dataset, Split } from "./dataset.ts";
import { gather } from "./partition.ts";
import { Random, deriveSeed } from "./random.ts";

/**
 * The training batch for `indices`: gather() plus the dataset's augmentation, if it has one. This is
 * what the training loop calls for every minibatch.
 */
export function trainBatch(data: Dataset, indices: ArrayLike<number>): Split {
  const batch = gather(data.train, indices);
  const a = data.augmentation;
  if (a === undefined) return batch;
  let seed = a.seed;
  for (let i = 0; i < indices.length; i++) seed = deriveSeed(seed, indices[i]!);
  return augmentBatch(batch, data.inputShape, new Random(seed), a.padding, a.horizontalFlip);
}

/**
 * A new batch where every image [height, width, channels] (channel-last, as `inputShape` says) is
 * shifted by a random offset in [-padding, padding] on each axis (the pixels shifted in are 0, i.e.
 * the channel mean after normalisation) and, if `flip`, mirrored left-right with probability 1/2.
 * Equivalent to padding by `padding` zeros, cropping back to size at a uniformly random position,
 * then flipping. Labels are copied unchanged; `batch` is not modified.
 */
export function augmentBatch(batch: Split, inputShape: readonly number[], rng: Random, padding = 4, flip = true): Split {
  if (inputShape.length !== 3) throw new RangeError(`augmentBatch needs [height, width, channels], got [${inputShape.join(", ")}]`);
  const [height, width, channels] = inputShape as [number, number, number];
  const size = height * width * channels;
  if (batch.x.length !== batch.count * size) throw new RangeError(`batch has ${batch.x.length} values, not ${batch.count} images of [${inputShape.join(", ")}]`);
  if (!Number.isInteger(padding) || padding < 0) throw new RangeError(`padding must be an integer >= 0, got ${padding}`);
  const x = new Float32Array(batch.x.length); // zeros: what the padding shifts in
  const row = width * channels;
  for (let n = 0; n < batch.count; n++) {
    const dy = rng.nextInt(2 * padding + 1) - padding;
    const dx = rng.nextInt(2 * padding + 1) - padding;
    const mirror = flip && (rng.nextUint32() & 1) === 1;
    const base = n * size;
    for (let y = 0; y < height; y++) {
      const sy = y + dy;
      if (sy < 0 || sy >= height) continue;
      for (let xo = 0; xo < width; xo++) {
        // Crop first (source column xo + dx of the image), then mirror the cropped image.
        const sx = (mirror ? width - 1 - xo : xo) + dx;
        if (sx < 0 || sx >= width) continue;
        const to = base + y * row + xo * channels;
        const from = base + sy * row + sx * channels;
        for (let c = 0; c < channels; c++) x[to + c] = batch.x[from + c]!;
      }
    }
  }
  return { x, y: batch.y.slice(), count: batch.count };
}
