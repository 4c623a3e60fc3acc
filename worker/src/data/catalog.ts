/**
 * The real image datasets a worker can train on: where they are published, the exact bytes we
 * expect (SHA-256), their shape and how their pixels are normalised.
 *
 * Checksums: this machine cannot reach the internet, so they were not recomputed from a download
 * here. Each one was cross-checked offline against several independent public projects that pin the
 * same files (TensorFlow Datasets' checksum registry, torchvision ports, dataset fetch scripts), which
 * all agree; the Fashion-MNIST ones also match the MD5 sums in Zalando's README through those
 * projects. The IDX files also have the SHA-256 of their decompressed content, which any copy
 * shares however it was compressed: MNIST's pinned by several public projects that check the raw
 * files, Fashion-MNIST's by those and by Debian's dataset-fashion-mnist (re-gzipped files with the
 * same content). A wrong entry would fail loudly (a mismatch naming the file and the hashes), never
 * load different data silently. DATASET_SHA256=skip turns verification off explicitly.
 *
 * Normalisation: pixel p in 0..255 becomes (p / 255 - mean[c]) / std[c] for channel c, with the
 * per-channel mean and standard deviation of the training set as commonly quoted (torchvision recipes).
 * So inputs are float32 with about zero mean and unit variance per channel; augmentation pads with 0,
 * i.e. with the channel mean.
 */

export type ImageDatasetName = "mnist" | "fashion-mnist" | "cifar10" | "cifar100";

export interface PublishedFile {
  /** The published file name; also the name in the cache and in a DATASET_URL directory. */
  readonly name: string;
  readonly sha256: string;
  /** SHA-256 of the decompressed content, where it is known: a re-compressed copy verifies by it. */
  readonly contentSha256?: string;
}

export interface ImageDatasetSpec {
  readonly name: ImageDatasetName;
  /** How the files are laid out: four gzip IDX files, or one tar.gz of CIFAR binary batches. */
  readonly format: "idx" | "cifar10" | "cifar100";
  readonly files: readonly PublishedFile[];
  /** Directory URLs (ending in "/") that publish `files`, tried in order. */
  readonly mirrors: readonly string[];
  /** [height, width, channels]. */
  readonly inputShape: readonly [number, number, number];
  readonly classes: number;
  /** Per-channel training-set mean and standard deviation of p / 255. */
  readonly mean: readonly number[];
  readonly std: readonly number[];
  /** Random crop with padding and horizontal flip during training (the usual CIFAR recipe). */
  readonly augment: boolean;
}

const IDX_FILES = {
  trainImages: "train-images-idx3-ubyte.gz",
  trainLabels: "train-labels-idx1-ubyte.gz",
  testImages: "t10k-images-idx3-ubyte.gz",
  testLabels: "t10k-labels-idx1-ubyte.gz",
} as const;
export { IDX_FILES };

export const DATASETS: Readonly<Record<ImageDatasetName, ImageDatasetSpec>> = {
  mnist: {
    name: "mnist",
    format: "idx",
    files: [
      { name: IDX_FILES.trainImages, sha256: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", contentSha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db" },
      { name: IDX_FILES.trainLabels, sha256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", contentSha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5" },
      { name: IDX_FILES.testImages, sha256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", contentSha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7" },
      { name: IDX_FILES.testLabels, sha256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", contentSha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2" },
    ],
    // yann.lecun.com, the original, often refuses downloads now; TensorFlow's and PyTorch's mirrors
    // serve the same bytes.
    mirrors: [
      "https://storage.googleapis.com/cvdf-datasets/mnist/",
      "https://ossci-datasets.s3.amazonaws.com/mnist/",
      "http://yann.lecun.com/exdb/mnist/",
    ],
    inputShape: [28, 28, 1],
    classes: 10,
    mean: [0.1307],
    std: [0.3081],
    augment: false,
  },
  "fashion-mnist": {
    name: "fashion-mnist",
    format: "idx",
    files: [
      { name: IDX_FILES.trainImages, sha256: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", contentSha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888" },
      { name: IDX_FILES.trainLabels, sha256: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", contentSha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9" },
      { name: IDX_FILES.testImages, sha256: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", contentSha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b" },
      { name: IDX_FILES.testLabels, sha256: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", contentSha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34" },
    ],
    mirrors: [
      "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
      "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
    inputShape: [28, 28, 1],
    classes: 10,
    mean: [0.286],
    std: [0.353],
    augment: false,
  },
  cifar10: {
    name: "cifar10",
    format: "cifar10",
    files: [{ name: "cifar-10-binary.tar.gz", sha256: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd" }],
    mirrors: ["https://www.cs.toronto.edu/~kriz/"],
    inputShape: [32, 32, 3],
    classes: 10,
    mean: [0.4914, 0.4822, 0.4465],
    std: [0.247, 0.2435, 0.2616],
    augment: true,
  },
  cifar100: {
    name: "cifar100",
    format: "cifar100",
    files: [{ name: "cifar-100-binary.tar.gz", sha256: "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec" }],
    mirrors: ["https://www.cs.toronto.edu/~kriz/"],
    inputShape: [32, 32, 3],
    // 100 fine classes; with CIFAR100_LABELS=coarse, 20 superclasses.
    classes: 100,
    mean: [0.5071, 0.4865, 0.4409],
    std: [0.2673, 0.2564, 0.2762],
    augment: true,
  },
};

export function isImageDatasetName(name: string): name is ImageDatasetName {
  return Object.hasOwn(DATASETS, name);
}
