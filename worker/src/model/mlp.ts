/**
 * Fully connected models: the MLP used for the synthetic dataset and a linear baseline.
 * Parameter names: "dense1/kernel", "dense1/bias", ..., the last dense layer producing the logits.
 */
import * as tfl from "@tensorflow/tfjs-layers";
import { deriveSeed } from "../data/random.ts";
import type { ModelOptions } from "./model-builder.ts";

/** Keeps initialiser seeds apart from the dataset's streams when both use the same user seed. */
const INIT_SALT = 0x1417;

/** features -> 64 ReLU -> 64 ReLU -> classes logits. */
export function buildMlp(options: ModelOptions): tfl.LayersModel {
  return denseStack(options, [64, 64]);
}

/** features -> classes logits (multinomial logistic regression). */
export function buildLinear(options: ModelOptions): tfl.LayersModel {
  return denseStack(options, []);
}

/** Flatten (only for multi-dimensional inputs), then dense layers "dense1", "dense2", ... */
function denseStack(options: ModelOptions, hiddenUnits: readonly number[]): tfl.LayersModel {
  const input = tfl.input({ shape: [...options.inputShape], name: "input" });
  let h: tfl.SymbolicTensor = input;
  if (options.inputShape.length > 1) h = tfl.layers.flatten({ name: "flatten" }).apply(h) as tfl.SymbolicTensor;
  const units = [...hiddenUnits, options.classes];
  units.forEach((width, i) => {
    const isLogits = i === units.length - 1;
    h = tfl.layers
      .dense({
        name: `dense${i + 1}`,
        units: width,
        activation: isLogits ? "linear" : "relu",
        // Glorot-uniform (the Keras default) with a per-layer seed: identical on every worker.
        kernelInitializer: tfl.initializers.glorotUniform({ seed: deriveSeed(deriveSeed(options.seed, INIT_SALT), i + 1) }),
        biasInitializer: "zeros",
      })
      .apply(h) as tfl.SymbolicTensor;
  });
  return tfl.model({ inputs: input, outputs: h, name: hiddenUnits.length > 0 ? "mlp" : "linear" });
}
