/**
 * The in-memory form of a classification dataset as the worker trains on it. Kept generic so that
 * image datasets (MNIST [28, 28, 1], CIFAR-10 [32, 32, 3]) fit the same shape as the synthetic one.
 */

/** One split (train or test): `count` examples stored as flat row-major arrays. */
export interface Split {
  /** Features, `count * features` float32 values; example i occupies [i*features, (i+1)*features). */
  readonly x: Float32Array;
  /** Class labels, one per example, each in [0, classes). */
  readonly y: Int32Array;
  /** Number of examples: y.length, and x.length / features. */
  readonly count: number;
}

export interface Dataset {
  /** Shape of one example, outermost first, without the batch dimension: [32] for the synthetic
   *  set, [h, w, c] for images. Models reshape the flat rows of `x` to [batch, ...inputShape]. */
  readonly inputShape: readonly number[];
  /** Values per example: the product of inputShape. */
  readonly features: number;
  /** Number of classes; labels are 0 .. classes-1. */
  readonly classes: number;
  readonly train: Split;
  readonly test: Split;
  /** Training-time augmentation of image batches (CIFAR), applied by trainBatch() in augment.ts;
   *  never to the test split. Absent: training batches are the stored rows as they are. */
  readonly augmentation?: Augmentation;
}

/** Random crop (pad by `padding` zeros on each side, then crop back to size at a random offset) and,
 *  if `horizontalFlip`, a mirror image with probability 1/2, independently per example. */
export interface Augmentation {
  readonly padding: number;
  readonly horizontalFlip: boolean;
  /** Seeds the per-batch random streams (with the batch's example indices), so runs are reproducible. */
  readonly seed: number;
}

/** Throws if a split's arrays disagree with its count and the row length, or a label is out of range. */
export function checkSplit(split: Split, features: number, classes: number, what = "split"): void {
  if (split.y.length !== split.count) {
    throw new Error(`${what}: y has ${split.y.length} labels but count is ${split.count}`);
  }
  if (split.x.length !== split.count * features) {
    throw new Error(
      `${what}: x has ${split.x.length} values but count * features is ${split.count} * ${features}`,
    );
  }
  for (let i = 0; i < split.count; i++) {
    const label = split.y[i]!;
    if (label < 0 || label >= classes) {
      throw new Error(`${what}: label ${label} of example ${i} is outside [0, ${classes})`);
    }
  }
}
