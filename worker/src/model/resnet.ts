/**
 * `resnet18`, the CIFAR variant of ResNet-18 (He et al. 2016, as commonly trained on 32x32 images):
 *
 *   stem:   conv 3x3, 64, stride 1 -> batch norm -> ReLU          (no 7x7 conv, no max pool)
 *   stage1: 2 basic blocks, 64 channels, stride 1
 *   stage2: 2 basic blocks, 128 channels, first block stride 2
 *   stage3: 2 basic blocks, 256 channels, first block stride 2
 *   stage4: 2 basic blocks, 512 channels, first block stride 2
 *   global average pooling -> fc (logits)
 *
 * A basic block is conv 3x3 -> BN -> ReLU -> conv 3x3 -> BN, plus a shortcut (identity, or a 1x1
 * strided conv + BN where the shape changes), added, then ReLU. Convolutions have no bias (the batch
 * norm that follows has one). 11,173,962 trainable parameters for 10 classes (11,220,132 for 100).
 *
 * Layer names are explicit and positional ("stage2_block1_conv1", "stage2_block1_bn1",
 * "stage2_block1_shortcut_conv", ...), so parameter names are the same on every worker and run.
 *
 * Batch norm: gamma and beta are trainable parameters (pulled from and pushed to the server like any
 * weight). The running mean and variance are NOT gradients; they are kept local to each worker: every
 * training step (Trainer.gradients, training mode) updates them from the worker's own batch
 * (momentum 0.9), and evaluation (inference mode) normalises with them. Since every worker trains the
 * same parameters on an i.i.d. slice of the data, their running statistics estimate the same thing.
 * Trainer.nonTrainableState() exposes them by name so that they can be synchronised or exported later.
 */
import * as tfl from "@tensorflow/tfjs-layers";
import { deriveSeed } from "../data/random.ts";
import type { ModelOptions } from "./model-builder.ts";

/** Keeps this model's initialiser seeds apart from other models' and the dataset's streams. */
const INIT_SALT = 0x2e5;

/** PyTorch's defaults (Keras' are momentum 0.99, epsilon 1e-3), as the usual CIFAR recipes use. */
const BN_MOMENTUM = 0.9;
const BN_EPSILON = 1e-5;

const STAGES = [
  { channels: 64, stride: 1 },
  { channels: 128, stride: 2 },
  { channels: 256, stride: 2 },
  { channels: 512, stride: 2 },
] as const;
const BLOCKS_PER_STAGE = 2;

type T = tfl.SymbolicTensor;

export function buildResnet18(options: ModelOptions): tfl.LayersModel {
  if (options.inputShape.length !== 3) {
    throw new RangeError(`resnet18 needs image input [height, width, channels], got [${options.inputShape.join(", ")}]`);
  }
  let layerIndex = 0;
  const seed = () => deriveSeed(deriveSeed(options.seed, INIT_SALT), ++layerIndex);
  const conv = (name: string, filters: number, kernelSize: number, strides: number) =>
    tfl.layers.conv2d({
      name,
      filters,
      kernelSize,
      strides,
      padding: "same",
      useBias: false,
      // He (Kaiming) normal, as ResNets are initialised; tfjs draws it from a truncated normal.
      kernelInitializer: tfl.initializers.heNormal({ seed: seed() }),
    });
  const bn = (name: string) =>
    tfl.layers.batchNormalization({ name, momentum: BN_MOMENTUM, epsilon: BN_EPSILON, gammaInitializer: "ones", betaInitializer: "zeros" });
  const relu = (name: string) => tfl.layers.reLU({ name });

  const block = (x: T, prefix: string, channels: number, stride: number): T => {
    let h = conv(`${prefix}_conv1`, channels, 3, stride).apply(x) as T;
    h = bn(`${prefix}_bn1`).apply(h) as T;
    h = relu(`${prefix}_relu1`).apply(h) as T;
    h = conv(`${prefix}_conv2`, channels, 3, 1).apply(h) as T;
    h = bn(`${prefix}_bn2`).apply(h) as T;
    let shortcut = x;
    const inChannels = x.shape[3];
    if (stride !== 1 || inChannels !== channels) {
      shortcut = conv(`${prefix}_shortcut_conv`, channels, 1, stride).apply(x) as T;
      shortcut = bn(`${prefix}_shortcut_bn`).apply(shortcut) as T;
    }
    const sum = tfl.layers.add({ name: `${prefix}_add` }).apply([h, shortcut]) as T;
    return relu(`${prefix}_relu2`).apply(sum) as T;
  };

  const input = tfl.input({ shape: [...options.inputShape], name: "input" });
  let h = conv("stem_conv", 64, 3, 1).apply(input) as T;
  h = bn("stem_bn").apply(h) as T;
  h = relu("stem_relu").apply(h) as T;
  STAGES.forEach(({ channels, stride }, s) => {
    for (let b = 0; b < BLOCKS_PER_STAGE; b++) {
      h = block(h, `stage${s + 1}_block${b + 1}`, channels, b === 0 ? stride : 1);
    }
  });
  h = tfl.layers.globalAveragePooling2d({ name: "pool" }).apply(h) as T;
  h = tfl.layers
    .dense({
      name: "fc",
      units: options.classes,
      kernelInitializer: tfl.initializers.glorotUniform({ seed: seed() }),
      biasInitializer: "zeros",
    })
    .apply(h) as T;
  return tfl.model({ inputs: input, outputs: h, name: "resnet18" });
}
