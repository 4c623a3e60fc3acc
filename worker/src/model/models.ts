/**
 * The registry of model architectures a worker can train, by name. Each architecture lives in its own
 * file and exports a builder with the ModelBuilder signature (model-builder.ts, with the contract
 * every builder keeps); to add one, write its file and add it to MODEL_BUILDERS.
 */
import type * as tfl from "@tensorflow/tfjs-layers";
import { buildCnn } from "./cnn.ts";
import type { ModelBuilder, ModelOptions } from "./model-builder.ts";
import { buildLinear, buildMlp } from "./mlp.ts";
import { buildResnet18 } from "./resnet.ts";

export const MODEL_BUILDERS = {
  /** Two hidden ReLU layers of 64 units: features-64-64-classes. */
  mlp: buildMlp,
  /** Softmax regression (a single dense layer): the linear baseline. */
  linear: buildLinear,
  /** Four 3x3 conv layers and two dense layers, for 28x28 and 32x32 images (see cnn.ts). */
  cnn: buildCnn,
  /** ResNet-18, CIFAR variant, ~11.2M parameters, with batch norm (see resnet.ts). */
  resnet18: buildResnet18,
} satisfies Record<string, ModelBuilder>;

export type ModelName = keyof typeof MODEL_BUILDERS;

export function isModelName(name: string): name is ModelName {
  return Object.hasOwn(MODEL_BUILDERS, name);
}

/** Builds a fresh model. The tfjs backend must already be initialised (see initBackend). */
export function createModel(name: ModelName, options: ModelOptions): tfl.LayersModel {
  if (!isModelName(name)) {
    throw new Error(`unknown model "${name}"; known models: ${Object.keys(MODEL_BUILDERS).join(", ")}`);
  }
  if (options.inputShape.length === 0 || !options.inputShape.every((d) => Number.isInteger(d) && d > 0)) {
    throw new RangeError(`inputShape must be non-empty positive integers, got [${options.inputShape.join(", ")}]`);
  }
  if (!Number.isInteger(options.classes) || options.classes < 2) {
    throw new RangeError(`classes must be an integer >= 2, got ${options.classes}`);
  }
  if (!Number.isInteger(options.seed)) throw new RangeError(`seed must be an integer, got ${options.seed}`);
  return MODEL_BUILDERS[name](options);
}
