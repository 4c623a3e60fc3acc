/**
 * Building the dataset a worker trains on from its configuration: the seeded synthetic task, or a
 * real image dataset obtained from its public mirrors, DATASET_URL (http(s), s3:// or a local path),
 * cached under DATA_DIR and verified by SHA-256 (see dataset-cache.ts and catalog.ts).
 */
import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "@distributed-ps/common/log.ts";
import { readCifarArchive, type Cifar100Labels } from "./cifar.ts";
import { DATASETS, IDX_FILES, isImageDatasetName, type ImageDatasetSpec } from "./catalog.ts";
import { isDirectory, obtainFile, type WantedFile } from "./dataset-cache.ts";
import { DatasetError, describeLocation, locate, type DownloadOptions } from "./dataset-source.ts";
import { checkSplit, type Dataset, type Split } from "./dataset.ts";
import { parseIdx } from "./idx.ts";
import { normalisedSplit } from "./images.ts";
import { gather, sliceForPart } from "./partition.ts";
import { deriveSeed } from "./random.ts";
import { makeSyntheticDataset } from "./synthetic.ts";

export { DatasetError } from "./dataset-source.ts";

/** The configuration loadDataset reads (a subset of the worker's environment). */
export interface DatasetConfig {
  readonly DATASET: "synthetic" | keyof typeof DATASETS;
  readonly SEED: number;
  readonly TRAIN_EXAMPLES?: number | undefined;
  readonly TEST_EXAMPLES?: number | undefined;
  readonly DATASET_URL?: string | undefined;
  readonly DATA_DIR: string;
  readonly DATASET_SHA256?: string | undefined;
  readonly S3_ENDPOINT?: string | undefined;
  readonly CIFAR100_LABELS?: Cifar100Labels;
}

export type LoadedDataset = Dataset & {
  /** Synthetic only: the Bayes-optimal test accuracy. */
  readonly bayesAccuracy?: number;
  /** One line for the log: what was loaded, from where. */
  readonly description: string;
};

const SYNTHETIC_DEFAULTS = { train: 16_000, test: 4_000 };
/** Separates the subset choice and the augmentation streams from the other uses of SEED. */
const SUBSET_SALT = { train: 0x5b71, test: 0x5b72 };
const AUGMENT_SALT = 0xa06;
/** CIFAR augmentation: pad 4 pixels, random 32x32 crop, random horizontal flip. */
const CIFAR_PADDING = 4;

/** Loads the configured dataset. Throws DatasetError (a message naming the source) on failure. */
export async function loadDataset(config: DatasetConfig, log: Logger, download: DownloadOptions = {}): Promise<LoadedDataset> {
  if (config.DATASET === "synthetic") {
    const data = makeSyntheticDataset({
      seed: config.SEED,
      trainExamples: config.TRAIN_EXAMPLES ?? SYNTHETIC_DEFAULTS.train,
      testExamples: config.TEST_EXAMPLES ?? SYNTHETIC_DEFAULTS.test,
    });
    return { ...data, description: `synthetic (Bayes-optimal test accuracy ${(data.bayesAccuracy * 100).toFixed(1)}%)` };
  }
  if (!isImageDatasetName(config.DATASET)) throw new DatasetError(`unknown dataset "${config.DATASET}"`);
  const spec = DATASETS[config.DATASET];
  const checksums = parseChecksums(config.DATASET_SHA256, spec);
  if (checksums === "skip") log.warn(`DATASET_SHA256=skip: the ${spec.name} files are NOT verified`);

  const paths = new Map<string, string>();
  for (const file of spec.files) {
    // An override may be the file's checksum or its decompressed content's: either verifies.
    const override = checksums === "skip" ? undefined : checksums.get(file.name);
    const wanted: WantedFile =
      checksums === "skip"
        ? { name: file.name, sha256: undefined }
        : { name: file.name, sha256: override ?? file.sha256, contentSha256: override ?? file.contentSha256 };
    const bases = config.DATASET_URL !== undefined ? [config.DATASET_URL] : spec.mirrors;
    const sources = bases.map((base) => locate(base, file.name, spec.files.length === 1, isDirectory));
    const path = await obtainFile(wanted, sources, {
      ...download,
      cacheDir: join(config.DATA_DIR, spec.name),
      s3Endpoint: config.S3_ENDPOINT,
      log: (m) => log.info(m),
      onRetry: (m) => log.warn(m),
    });
    paths.set(file.name, path);
  }
  const source = config.DATASET_URL ?? (spec.mirrors.length === 1 ? describeLocation(locate(spec.mirrors[0]!, spec.files[0]!.name, true)) : spec.mirrors[0]!);

  const labels = config.CIFAR100_LABELS ?? "fine";
  const classes = spec.format === "cifar100" && labels === "coarse" ? 20 : spec.classes;
  let { train, test } = spec.format === "idx" ? await readIdxDataset(spec, paths) : await readCifar(spec, paths.get(spec.files[0]!.name)!, labels);
  const features = spec.inputShape[0] * spec.inputShape[1] * spec.inputShape[2];
  checkSplit(train, features, classes, `${spec.name} training set`);
  checkSplit(test, features, classes, `${spec.name} test set`);
  const fullTrain = train.count;
  const fullTest = test.count;
  train = subset(train, config.TRAIN_EXAMPLES, deriveSeed(config.SEED, SUBSET_SALT.train));
  test = subset(test, config.TEST_EXAMPLES, deriveSeed(config.SEED, SUBSET_SALT.test));
  const sizes = (n: number, full: number) => (n === full ? `${n}` : `${n} of ${full}`);
  return {
    inputShape: spec.inputShape,
    features,
    classes,
    train,
    test,
    ...(spec.augment ? { augmentation: { padding: CIFAR_PADDING, horizontalFlip: true, seed: deriveSeed(config.SEED, AUGMENT_SALT) } } : {}),
    description:
      `${spec.name}${spec.format === "cifar100" ? ` (${labels} labels)` : ""} from ${source}: ` +
      `${sizes(train.count, fullTrain)} train / ${sizes(test.count, fullTest)} test images [${spec.inputShape.join("x")}], ${classes} classes` +
      (spec.augment ? ", training with random crop + flip" : ""),
  };
}

/**
 * Throws a DatasetError if a worker's slice of the training set would not hold one batch (each worker
 * gets floor(train / totalWorkers) or one more examples). Call once the number of workers is known.
 */
export function checkSliceHoldsABatch(trainExamples: number, totalWorkers: number, batchSize: number): void {
  const smallest = Math.floor(trainExamples / totalWorkers);
  if (smallest < batchSize) {
    throw new DatasetError(
      `each of the ${totalWorkers} workers gets ${smallest} of the ${trainExamples} training examples, fewer than ` +
        `one batch (BATCH_SIZE=${batchSize}): use fewer workers, a smaller BATCH_SIZE or more TRAIN_EXAMPLES`,
    );
  }
}

/** "skip", or overrides by file name, from DATASET_SHA256. */
function parseChecksums(text: string | undefined, spec: ImageDatasetSpec): "skip" | Map<string, string> {
  const overrides = new Map<string, string>();
  if (text === undefined || text.trim() === "") return overrides;
  if (text.trim().toLowerCase() === "skip") return "skip";
  const hex = /^[0-9a-f]{64}$/;
  const bad = (why: string) => new DatasetError(`DATASET_SHA256="${text}": ${why}`);
  const entries = text.split(",").map((e) => e.trim()).filter((e) => e !== "");
  if (entries.length === 1 && !entries[0]!.includes("=")) {
    if (spec.files.length !== 1) throw bad(`${spec.name} has ${spec.files.length} files: give name=sha256 for each one to override`);
    const sum = entries[0]!.toLowerCase();
    if (!hex.test(sum)) throw bad("not a SHA-256 (64 hex digits)");
    overrides.set(spec.files[0]!.name, sum);
    return overrides;
  }
  for (const entry of entries) {
    const [name, sum] = entry.split("=").map((s) => s.trim());
    if (name === undefined || sum === undefined || !hex.test(sum.toLowerCase())) throw bad(`"${entry}" is not file=sha256`);
    if (!spec.files.some((f) => f.name === name)) throw bad(`${spec.name} has no file "${name}" (its files: ${spec.files.map((f) => f.name).join(", ")})`);
    overrides.set(name, sum.toLowerCase());
  }
  return overrides;
}

async function readIdxDataset(spec: ImageDatasetSpec, paths: ReadonlyMap<string, string>): Promise<{ train: Split; test: Split }> {
  const [height, width, channels] = spec.inputShape;
  const read = async (imagesName: string, labelsName: string) => {
    const imagesPath = paths.get(imagesName)!;
    const labelsPath = paths.get(labelsName)!;
    const images = wrap(() => parseIdx(readSync(imagesPath), imagesPath), imagesPath);
    const labels = wrap(() => parseIdx(readSync(labelsPath), labelsPath), labelsPath);
    if (images.dims.length !== 3 || images.dims[1] !== height || images.dims[2] !== width || channels !== 1) {
      throw new DatasetError(`${imagesPath}: expected images [n, ${height}, ${width}], got [${images.dims.join(", ")}]`);
    }
    if (labels.dims.length !== 1 || labels.dims[0] !== images.dims[0]) {
      throw new DatasetError(`${labelsPath}: expected ${images.dims[0]} labels, got [${labels.dims.join(", ")}]`);
    }
    const outside = labels.data.findIndex((label) => label >= spec.classes);
    if (outside >= 0) {
      throw new DatasetError(`${labelsPath}: label ${labels.data[outside]} of example ${outside} is outside [0, ${spec.classes}) (a corrupted file, or another dataset's)`);
    }
    return normalisedSplit(images.data, Int32Array.from(labels.data), spec);
  };
  const readSync = (path: string) => files.get(path)!;
  const files = new Map<string, Buffer>();
  for (const path of paths.values()) files.set(path, await readFile(path));
  return {
    train: await read(IDX_FILES.trainImages, IDX_FILES.trainLabels),
    test: await read(IDX_FILES.testImages, IDX_FILES.testLabels),
  };
}

async function readCifar(spec: ImageDatasetSpec, path: string, labels: Cifar100Labels): Promise<{ train: Split; test: Split }> {
  const variant = spec.format === "cifar100" ? "cifar100" : "cifar10";
  let data;
  try {
    data = await readCifarArchive(createReadStream(path), variant, path, labels);
  } catch (err) {
    throw new DatasetError(err instanceof Error ? err.message : String(err));
  }
  return {
    train: normalisedSplit(data.train.pixels, data.train.labels, spec),
    test: normalisedSplit(data.test.pixels, data.test.labels, spec),
  };
}

function wrap<T>(f: () => T, what: string): T {
  try {
    return f();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new DatasetError(message.startsWith(what) ? message : `${what}: ${message}`);
  }
}

/** A seeded random subset of `size` examples (all of them if size is undefined or not smaller). */
function subset(split: Split, size: number | undefined, seed: number): Split {
  if (size === undefined || size >= split.count) return split;
  return gather(split, sliceForPart(split.count, 0, 1, seed).subarray(0, size));
}
