/**
 * Recommended per-model batch size (per worker) and learning rate. The batch size is the worker's
 * BATCH_SIZE; the learning rate is the server's LEARNING_RATE (the server owns the update rule), so
 * both are set in configuration: these are the values docs/datasets-and-models.md recommends and that
 * scripts/experiment.ts uses.
 *
 *   mlp, linear  plain SGD at 0.1 is what the synthetic task was tuned for (tests reach ~80%).
 *   cnn          SGD with momentum 0.9 at 0.05, batch 64: the usual small-convnet recipe for MNIST.
 *   resnet18     SGD with momentum 0.9 at 0.1 for a global batch of 128 (Goyal et al.'s linear
 *                scaling: 0.1 x W*B / 128 for W workers of batch B), weight decay 5e-4, cosine
 *                schedule: the standard CIFAR recipe. Batch 32 per worker keeps a step short on wasm.
 */
import type { ModelName } from "./models.ts";

export interface ModelDefaults {
  /** Examples per gradient on one worker (BATCH_SIZE). */
  readonly batchSize: number;
  /** Server LEARNING_RATE. */
  readonly learningRate: number;
  /** Server OPTIMIZER the learning rate is meant for. */
  readonly optimizer: "sgd" | "momentum" | "adam";
}

export const MODEL_DEFAULTS: Readonly<Record<ModelName, ModelDefaults>> = {
  mlp: { batchSize: 32, learningRate: 0.1, optimizer: "sgd" },
  linear: { batchSize: 32, learningRate: 0.1, optimizer: "sgd" },
  cnn: { batchSize: 64, learningRate: 0.05, optimizer: "momentum" },
  resnet18: { batchSize: 32, learningRate: 0.1, optimizer: "momentum" },
};
