/**
 * A seeded synthetic classification problem with a known best-possible accuracy, for tests and
 * end-to-end runs without downloading a real dataset.
 *
 * Generative model (every quantity below is derived from `seed` alone, so all workers agree):
 *   - Each class is an equal-weight mixture of `clustersPerClass` isotropic Gaussian clusters.
 *   - The cluster centres live in a small `latentDims`-dimensional space, drawn uniformly in the cube
 *     [-1, 1]^latentDims with a minimum pairwise distance; centre j belongs to class j % classes, so
 *     a class's clusters are scattered among other classes' clusters. With many more clusters than
 *     latent dimensions, the classes are not linearly separable (a linear model does clearly worse
 *     than an MLP), yet an MLP can carve the clusters out.
 *   - The latent space is embedded into `features` dimensions by a random matrix Q with orthonormal
 *     columns, and isotropic noise N(0, clusterStd^2) is added in ALL feature dimensions, so every
 *     feature mixes signal and noise and the model must find the informative subspace.
 *   - Label noise: with probability `labelNoise` the observed label is replaced by one of the other
 *     classes, uniformly. This caps any classifier's accuracy at about 1 - labelNoise.
 *
 * `bayesAccuracy` is the accuracy of the Bayes-optimal classifier on the generated test set: the exact
 * posterior over observed (noisy) labels, computed from the true mixture, then argmax. No model can
 * be expected to beat it except by chance on a finite test set.
 */
import type { Dataset, Split } from "./dataset.ts";
import { Random, deriveSeed } from "./random.ts";

export interface SyntheticOptions {
  /** Every worker building with the same seed (and options) gets bit-identical data. */
  readonly seed: number;
  readonly trainExamples: number;
  readonly testExamples: number;
  /** Feature dimension (the model's input size). Default 32. */
  readonly features?: number;
  /** Default 10. */
  readonly classes?: number;
  // The knobs below are tuned so that bayesAccuracy is about 0.89 (0.86-0.91 over seeds 1-12); change them only to make a
  // deliberately easier or harder problem.
  /** Gaussian clusters per class. Default 3. */
  readonly clustersPerClass?: number;
  /** Dimension of the space the cluster centres live in; at most `features`. Default 6. */
  readonly latentDims?: number;
  /** Standard deviation of the noise in every feature dimension. Default see DEFAULTS. */
  readonly clusterStd?: number;
  /** Probability that an observed label was flipped to another class. Default 0.05. */
  readonly labelNoise?: number;
}

export type SyntheticDataset = Dataset & {
  /** Accuracy of the Bayes-optimal classifier on this test set (the best reachable, up to noise). */
  readonly bayesAccuracy: number;
};

const DEFAULTS = {
  features: 32,
  classes: 10,
  clustersPerClass: 3,
  latentDims: 6,
  clusterStd: 0.27,
  labelNoise: 0.05,
  /** Minimum distance between two centres, as a multiple of clusterStd. */
  minCentreSeparationInStd: 2.5,
};

/** Salts that give each random stream its own seed: changing trainExamples must not change the
 *  centres or the test set. */
const STREAM = { centres: 1, embedding: 2, train: 3, test: 4 } as const;

/** Everything needed to sample examples and to compute the exact posterior. */
interface Mixture {
  readonly features: number;
  readonly classes: number;
  readonly clustersPerClass: number;
  readonly clusterStd: number;
  readonly labelNoise: number;
  /** Cluster centres already embedded in feature space (Q mu), `features` values each. Centre j
   *  belongs to class j % classes, so class c's clusters are j = c, c + classes, c + 2*classes, ... */
  readonly centres: readonly Float64Array[];
  /** |centre j|^2 / 2, used by the posterior. */
  readonly halfSquaredNorms: Float64Array;
}

export function makeSyntheticDataset(options: SyntheticOptions): SyntheticDataset {
  const mixture = buildMixture(options);
  const train = sample(mixture, options.trainExamples, deriveSeed(options.seed, STREAM.train));
  const test = sample(mixture, options.testExamples, deriveSeed(options.seed, STREAM.test));
  return {
    inputShape: [mixture.features],
    features: mixture.features,
    classes: mixture.classes,
    train,
    test,
    bayesAccuracy: bayesAccuracy(mixture, test),
  };
}

function buildMixture(options: SyntheticOptions): Mixture {
  const features = options.features ?? DEFAULTS.features;
  const classes = options.classes ?? DEFAULTS.classes;
  const clustersPerClass = options.clustersPerClass ?? DEFAULTS.clustersPerClass;
  const latentDims = Math.min(options.latentDims ?? DEFAULTS.latentDims, features);
  const clusterStd = options.clusterStd ?? DEFAULTS.clusterStd;
  const labelNoise = options.labelNoise ?? DEFAULTS.labelNoise;
  for (const [name, value] of Object.entries({
    trainExamples: options.trainExamples,
    testExamples: options.testExamples,
  })) {
    if (!Number.isInteger(value) || value < 0) throw new RangeError(`${name} must be an integer >= 0, got ${value}`);
  }
  for (const [name, value] of Object.entries({ features, classes, clustersPerClass, latentDims })) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be an integer >= 1, got ${value}`);
  }
  if (classes < 2) throw new RangeError(`classes must be at least 2, got ${classes}`);
  if (!(clusterStd > 0)) throw new RangeError(`clusterStd must be > 0, got ${clusterStd}`);
  // At (classes-1)/classes the observed label carries no information about the true class.
  if (!(labelNoise >= 0 && labelNoise < (classes - 1) / classes)) {
    throw new RangeError(`labelNoise must be in [0, ${(classes - 1) / classes}), got ${labelNoise}`);
  }

  const latentCentres = placeCentres(
    classes * clustersPerClass,
    latentDims,
    DEFAULTS.minCentreSeparationInStd * clusterStd,
    new Random(deriveSeed(options.seed, STREAM.centres)),
  );
  const basis = orthonormalBasis(features, latentDims, new Random(deriveSeed(options.seed, STREAM.embedding)));
  // Q mu = sum over latent dimensions d of mu[d] * basis[d].
  const centres = latentCentres.map((mu) => {
    const embedded = new Float64Array(features);
    mu.forEach((coordinate, d) => addScaled(embedded, coordinate, basis[d]!));
    return embedded;
  });
  const halfSquaredNorms = Float64Array.from(centres, (m) => dot(m, m) / 2);
  return { features, classes, clustersPerClass, clusterStd, labelNoise, centres, halfSquaredNorms };
}

/**
 * `count` points uniform in [-1, 1]^dims, each at least `minDistance` from all earlier ones
 * (rejection sampling). If the cube is too crowded to keep the minimum, the requirement is relaxed
 * by 10% after every 1000 failed tries, so this always terminates and stays deterministic.
 */
function placeCentres(count: number, dims: number, minDistance: number, random: Random): Float64Array[] {
  const centres: Float64Array[] = [];
  let required = minDistance;
  let failures = 0;
  while (centres.length < count) {
    const candidate = Float64Array.from({ length: dims }, () => 2 * random.nextFloat() - 1);
    if (centres.every((c) => squaredDistance(c, candidate) >= required * required)) {
      centres.push(candidate);
    } else if (++failures % 1000 === 0) {
      required *= 0.9;
    }
  }
  return centres;
}

/** `count` orthonormal vectors of length `dims` (count <= dims): Gram-Schmidt on Gaussian vectors.
 *  They are the columns of the embedding Q, so |Q mu| = |mu| and the noise stays isotropic. */
function orthonormalBasis(dims: number, count: number, random: Random): Float64Array[] {
  const basis: Float64Array[] = [];
  while (basis.length < count) {
    const v = Float64Array.from({ length: dims }, () => random.normal());
    // Modified Gram-Schmidt: remove the components along the earlier vectors.
    for (const b of basis) addScaled(v, -dot(v, b), b);
    const norm = Math.sqrt(dot(v, v));
    // A degenerate draw (norm ~ 0) is astronomically unlikely; it is simply redrawn.
    if (norm > 1e-6) basis.push(v.map((value) => value / norm));
  }
  return basis;
}

function sample(mixture: Mixture, count: number, seed: number): Split {
  const { features, classes, clustersPerClass, clusterStd, labelNoise, centres } = mixture;
  const random = new Random(seed);
  const x = new Float32Array(count * features);
  const y = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const trueClass = random.nextInt(classes);
    const centre = centres[random.nextInt(clustersPerClass) * classes + trueClass]!;
    const row = x.subarray(i * features, (i + 1) * features);
    for (let f = 0; f < features; f++) row[f] = centre[f]! + clusterStd * random.normal();
    let label = trueClass;
    if (random.nextFloat() < labelNoise) {
      // One of the other classes-1 classes, uniformly.
      label = (trueClass + 1 + random.nextInt(classes - 1)) % classes;
    }
    y[i] = label;
  }
  return { x, y, count };
}

/** Accuracy, against the noisy labels, of argmax over classes of the exact posterior. */
function bayesAccuracy(mixture: Mixture, split: Split): number {
  if (split.count === 0) return Number.NaN;
  const { features } = mixture;
  let correct = 0;
  for (let i = 0; i < split.count; i++) {
    const posterior = observedLabelPosterior(mixture, split.x.subarray(i * features, (i + 1) * features));
    if (argMax(posterior) === split.y[i]) correct++;
  }
  return correct / split.count;
}

/**
 * P(observed label = c | x) for every class c.
 *
 * Class priors are uniform and cluster weights equal, so with isotropic noise
 *   log p(x | class c) = logsumexp_k( -|x - m_ck|^2 / (2 std^2) ) + const,
 * and since |x|^2 is the same for every cluster, -|x - m|^2 / 2 can be replaced by x.m - |m|^2 / 2.
 * Label noise then mixes the true-class posterior p: P(observed c) = (1-e) p_c + e/(C-1) (1 - p_c).
 * (This is monotone in p_c, so the argmax is the same as for the clean posterior.)
 */
function observedLabelPosterior(mixture: Mixture, x: Float32Array): Float64Array {
  const { classes, clustersPerClass, clusterStd, labelNoise, centres } = mixture;
  const { halfSquaredNorms } = mixture;
  const variance = clusterStd * clusterStd;
  const logLikelihood = new Float64Array(classes);
  for (let c = 0; c < classes; c++) {
    const scores: number[] = [];
    for (let k = 0; k < clustersPerClass; k++) {
      const m = centres[k * classes + c]!;
      scores.push((dot(x, m) - halfSquaredNorms[k * classes + c]!) / variance);
    }
    logLikelihood[c] = logSumExp(scores);
  }
  const truePosterior = softmax(logLikelihood);
  const flipToEach = labelNoise / (classes - 1);
  return truePosterior.map((p) => (1 - labelNoise) * p + flipToEach * (1 - p));
}

// Small vector helpers. Plain indexed loops: these run ~10^7 times for a full dataset.

function logSumExp(values: readonly number[]): number {
  let top = -Infinity; // subtracted for numerical stability
  for (const v of values) top = Math.max(top, v);
  let sum = 0;
  for (const v of values) sum += Math.exp(v - top);
  return top + Math.log(sum);
}

function softmax(logits: Float64Array): Float64Array {
  let top = -Infinity;
  for (const v of logits) top = Math.max(top, v);
  const exps = logits.map((v) => Math.exp(v - top));
  let total = 0;
  for (const v of exps) total += v;
  return exps.map((v) => v / total);
}

function argMax(values: Float64Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

function dot(a: Float32Array | Float64Array, b: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < b.length; i++) sum += a[i]! * b[i]!;
  return sum;
}

function squaredDistance(a: Float64Array, b: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < b.length; i++) sum += (a[i]! - b[i]!) ** 2;
  return sum;
}

/** target += scale * v, in place. */
function addScaled(target: Float64Array, scale: number, v: Float64Array): void {
  for (let i = 0; i < v.length; i++) target[i] = target[i]! + scale * v[i]!;
}
