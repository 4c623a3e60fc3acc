/**
 * What every model builder takes and returns. The contract, relied on by the Trainer and the
 * parameter server:
 *   - Output: LOGITS of shape [batch, classes] (no softmax; the loss applies it stably).
 *   - Explicit, unique layer names, so parameter names ("dense1/kernel", ...) are identical across
 *     workers and runs.
 *   - Seeded initialisers (distinct seed per layer derived from options.seed), so every worker builds
 *     bit-identical initial weights from the same seed.
 *   - Accepts an input of shape [batch, ...inputShape].
 */
import type * as tfl from "@tensorflow/tfjs-layers";

export interface ModelOptions {
  /** Shape of one example without the batch dimension, e.g. [32] or [28, 28, 1]. */
  readonly inputShape: readonly number[];
  readonly classes: number;
  /** Initial-weight seed; the same seed gives the same initial weights on every worker. */
  readonly seed: number;
}

export type ModelBuilder = (options: ModelOptions) => tfl.LayersModel;
