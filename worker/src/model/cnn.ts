/**
 * `cnn`: a small convolutional network for 28x28 (MNIST, Fashion-MNIST) and 32x32 (CIFAR) images.
 *
 *   conv1 3x3x32 ReLU -> conv2 3x3x32 ReLU -> pool1 2x2
 *   conv3 3x3x64 ReLU -> conv4 3x3x64 ReLU -> pool2 2x2
 *   flatten -> dense1 128 ReLU -> dense2 classes (logits)
 *
 * "same" padding, so the flattened size is (h/4) * (w/4) * 64: 3136 for 28x28, 4096 for 32x32
 * (about 0.42M and 0.55M trainable parameters for 10 classes). No batch norm and no dropout, so the
 * model has no state besides its trainable weights and no randomness besides the seeded initialisers.
 */
import * as tfl from "@tensorflow/tfjs-layers";
import { deriveSeed } from "../data/random.ts";
import type { ModelOptions } from "./model-builder.ts";

/** Keeps this model's initialiser seeds apart from other models' and the dataset's streams. */
const INIT_SALT = 0xc22;

export function buildCnn(options: ModelOptions): tfl.LayersModel {
  if (options.inputShape.length !== 3) {
    throw new RangeError(`cnn needs image input [height, width, channels], got [${options.inputShape.join(", ")}]`);
  }
  let layerIndex = 0;
  const seed = () => deriveSeed(deriveSeed(options.seed, INIT_SALT), ++layerIndex);
  const conv = (name: string, filters: number) =>
    tfl.layers.conv2d({
      name,
      filters,
      kernelSize: 3,
      padding: "same",
      activation: "relu",
      kernelInitializer: tfl.initializers.heNormal({ seed: seed() }),
      biasInitializer: "zeros",
    });
  const dense = (name: string, units: number, activation: "relu" | "linear") =>
    tfl.layers.dense({
      name,
      units,
      activation,
      kernelInitializer: tfl.initializers.glorotUniform({ seed: seed() }),
      biasInitializer: "zeros",
    });

  const input = tfl.input({ shape: [...options.inputShape], name: "input" });
  let h = conv("conv1", 32).apply(input) as tfl.SymbolicTensor;
  h = conv("conv2", 32).apply(h) as tfl.SymbolicTensor;
  h = tfl.layers.maxPooling2d({ name: "pool1", poolSize: 2 }).apply(h) as tfl.SymbolicTensor;
  h = conv("conv3", 64).apply(h) as tfl.SymbolicTensor;
  h = conv("conv4", 64).apply(h) as tfl.SymbolicTensor;
  h = tfl.layers.maxPooling2d({ name: "pool2", poolSize: 2 }).apply(h) as tfl.SymbolicTensor;
  h = tfl.layers.flatten({ name: "flatten" }).apply(h) as tfl.SymbolicTensor;
  h = dense("dense1", 128, "relu").apply(h) as tfl.SymbolicTensor;
  h = dense("dense2", options.classes, "linear").apply(h) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: h, name: "cnn" });
}
