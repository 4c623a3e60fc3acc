/**
 * Computes gradients and evaluations for one model, and moves its weights in and out as NamedTensors.
 *
 * The Trainer never applies an optimizer: the parameter server owns the update rule. A worker's step
 * is: setParameters(pulled from the server) -> gradients(batch) -> push gradients to the server. The
 * model's weights change only through setParameters.
 *
 * Parameter names are the layer-scoped names the model was built with ("dense1/kernel", ...). They are
 * taken from tfjs-layers' `originalName`, not `name`: tfjs uniquifies variable names per process
 * ("dense1/kernel_1" for the second model built), which would differ between workers. *
 * Non-trainable state (batch norm's moving_mean / moving_variance in resnet18) is not a parameter:
 * it has no gradient, parameters()/setParameters()/gradients() leave it out, and the server does not
 * train it (a worker sends its final values with Finish, for the exported model). It is local to
 * each worker: gradients() runs the model in training mode, which normalises with the batch's own
 * statistics and updates the moving averages from it; evaluate() runs in inference
 * mode, which normalises with the moving averages. nonTrainableState() / setNonTrainableState() move
 * it by the same stable names, so that it can be averaged across workers or exported later.
 */
import * as tf from "@tensorflow/tfjs-core";
import type * as tfl from "@tensorflow/tfjs-layers";
import { elementCount, type NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { inferenceGraph } from "../onnx/graphs.ts";
import { checkBatch, checkParameters, checkShape, type Evaluation, type GradientResult, type TrainingEngine } from "./engine.ts";

export type { Evaluation, GradientResult } from "./engine.ts";

/** One trainable weight: its stable name, shape and the tf.Variable backing it. */
interface Weight {
  readonly name: string;
  readonly shape: readonly number[];
  readonly variable: tf.Variable;
}

export class Trainer implements TrainingEngine {
  readonly engine = "tfjs" as const;
  readonly #model: tfl.LayersModel;
  /** Trainable weights in the model's own order (layer order; kernel before bias): stable. */
  readonly #weights: readonly Weight[];
  readonly #byName: ReadonlyMap<string, Weight>;
  /** Non-trainable weights (batch norm moving statistics): worker-local, never pushed. */
  readonly #state: readonly Weight[];
  /** Shape of one example, without the batch dimension. */
  readonly inputShape: readonly number[];
  /** Values per example: product of inputShape. */
  readonly features: number;
  readonly classes: number;

  /** `model` must output logits of shape [batch, classes] (see models.ts). The Trainer takes
   *  ownership: dispose() disposes the model. */
  constructor(model: tfl.LayersModel) {
    this.#model = model;
    const [input] = model.inputs;
    const [output] = model.outputs;
    if (input === undefined || output === undefined || model.inputs.length !== 1 || model.outputs.length !== 1) {
      throw new Error(`Trainer needs a model with one input and one output, "${model.name}" has ` +
        `${model.inputs.length} and ${model.outputs.length}`);
    }
    const inputShape = input.shape.slice(1);
    const classes = output.shape[1];
    if (!inputShape.every((d): d is number => typeof d === "number") || output.shape.length !== 2 ||
      typeof classes !== "number") {
      throw new Error(`model "${model.name}" must have a fully known input shape and [batch, classes] ` +
        `output, got input [${input.shape.join(", ")}] output [${output.shape.join(", ")}]`);
    }
    this.inputShape = inputShape;
    this.features = elementCount(inputShape);
    this.classes = classes;

    this.#weights = model.trainableWeights.map((w) => {
      // LayerVariable.read() returns the backing tf.Variable itself (not a copy).
      const variable = w.read() as tf.Variable;
      return { name: w.originalName, shape: [...variable.shape], variable };
    });
    const byName = new Map<string, Weight>();
    for (const weight of this.#weights) {
      if (byName.has(weight.name)) {
        throw new Error(`model "${model.name}" has two trainable weights named "${weight.name}"; give its layers unique names`);
      }
      byName.set(weight.name, weight);
    }
    this.#byName = byName;
    this.#state = model.nonTrainableWeights.map((w) => {
      const variable = w.read() as tf.Variable;
      return { name: w.originalName, shape: [...variable.shape], variable };
    });
  }

  /** Copies of the non-trainable weights (batch norm moving statistics), in a stable order; empty
   *  for models without any. */
  nonTrainableState(): NamedTensor[] {
    return this.#state.map(({ name, shape, variable }) => ({ name, shape, data: new Float32Array(variable.dataSync() as Float32Array) }));
  }

  inferenceGraph(): Uint8Array {
    return inferenceGraph(this.#model);
  }

  /** Replaces non-trainable weights by name (a subset is fine: unnamed ones keep their value). */
  setNonTrainableState(tensors: readonly NamedTensor[]): void {
    const byName = new Map(this.#state.map((w) => [w.name, w]));
    for (const tensor of tensors) {
      const weight = byName.get(tensor.name);
      if (weight === undefined) throw new Error(`setNonTrainableState: unknown tensor "${tensor.name}"`);
      checkShape(weight, tensor, "setNonTrainableState");
    }
    for (const tensor of tensors) {
      const weight = byName.get(tensor.name)!;
      tf.tidy(() => weight.variable.assign(tf.tensor(tensor.data, [...weight.shape], "float32")));
    }
  }

  /** Names and shapes of the trainable weights, in parameters() order, without copying data. */
  parameterSpecs(): { name: string; shape: readonly number[] }[] {
    return this.#weights.map(({ name, shape }) => ({ name, shape }));
  }

  /** Copies of the current trainable weights, in a stable order. */
  parameters(): NamedTensor[] {
    // new Float32Array(...) copies: dataSync() may return the backend's own storage.
    return this.#weights.map(({ name, shape, variable }) => ({
      name,
      shape,
      data: new Float32Array(variable.dataSync() as Float32Array),
    }));
  }

  /**
   * Replaces every trainable weight. `tensors` must name each weight exactly once (any order) with
   * the right shape; everything is validated before anything is assigned, so a rejected call leaves
   * the model unchanged.
   */
  setParameters(tensors: readonly NamedTensor[]): void {
    checkParameters(this.#weights, tensors);
    for (const tensor of tensors) {
      const weight = this.#byName.get(tensor.name)!;
      tf.tidy(() => weight.variable.assign(tf.tensor(tensor.data, [...weight.shape], "float32")));
    }
  }

  /**
   * Gradients of the mean softmax cross-entropy over one batch, with respect to every trainable
   * weight, at the current weights. `x` holds `count` rows of `features` values, `y` `count` labels.
   * Does not change the weights.
   */
  gradients(x: Float32Array, y: Int32Array, count: number): GradientResult {
    checkBatch(x, y, count, this.features, this.classes);
    if (count === 0) throw new RangeError("gradients: the batch is empty");
    const variables = this.#weights.map((w) => w.variable);
    let logits: tf.Tensor | undefined;
    const { value, grads } = tf.variableGrads(() => {
      const input = tf.tensor(x, [count, ...this.inputShape], "float32");
      const labels = tf.cast(tf.oneHot(tf.tensor1d(y, "int32"), this.classes), "float32");
      // training: true: batch norm normalises with batch statistics and updates its moving averages.
      const out = this.#model.apply(input, { training: true }) as tf.Tensor;
      logits = tf.keep(out); // survives variableGrads' internal tidy, disposed below
      return tf.losses.softmaxCrossEntropy(labels, out) as tf.Scalar; // mean over the batch
    }, variables);
    try {
      const gradients = this.#weights.map(({ name, shape, variable }) => {
        const grad = grads[variable.name];
        if (grad === undefined) throw new Error(`gradients: no gradient for "${name}"`);
        return { name, shape, data: new Float32Array(grad.dataSync() as Float32Array) };
      });
      const loss = scalarValue(value);
      const correct = countCorrect(logits!, y);
      return { gradients, loss, correct };
    } finally {
      value.dispose();
      for (const grad of Object.values(grads)) grad.dispose();
      logits?.dispose();
    }
  }

  /** Mean loss and accuracy over `count` examples, computed in chunks of `batchSize` (memory bound). */
  evaluate(x: Float32Array, y: Int32Array, count: number, batchSize = 512): Evaluation {
    checkBatch(x, y, count, this.features, this.classes);
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`evaluate: batchSize must be a positive integer, got ${batchSize}`);
    if (count === 0) return { loss: Number.NaN, accuracy: Number.NaN };
    let lossSum = 0; // summed over examples, in nats
    let correct = 0;
    for (let start = 0; start < count; start += batchSize) {
      const n = Math.min(batchSize, count - start);
      const labelsChunk = y.subarray(start, start + n);
      const [chunkLoss, chunkCorrect] = tf.tidy(() => {
        const input = tf.tensor(x.subarray(start * this.features, (start + n) * this.features), [n, ...this.inputShape], "float32");
        const logits = this.#model.apply(input, { training: false }) as tf.Tensor;
        const labels = tf.cast(tf.oneHot(tf.tensor1d(labelsChunk, "int32"), this.classes), "float32");
        const meanLoss = scalarValue(tf.losses.softmaxCrossEntropy(labels, logits));
        return [meanLoss, countCorrect(logits, labelsChunk)] as const;
      });
      lossSum += chunkLoss * n;
      correct += chunkCorrect;
    }
    return { loss: lossSum / count, accuracy: correct / count };
  }

  /** Frees the model's weights. The Trainer must not be used afterwards. */
  dispose(): void {
    this.#model.dispose();
  }
}

function scalarValue(scalar: tf.Tensor): number {
  const [value] = scalar.dataSync();
  if (value === undefined || scalar.size !== 1) throw new Error(`expected a scalar, got shape [${scalar.shape.join(", ")}]`);
  return value;
}

/** Number of rows of `logits` ([n, classes]) whose argmax equals the label. */
function countCorrect(logits: tf.Tensor, labels: Int32Array): number {
  return tf.tidy(() => {
    const predicted = tf.argMax(logits, 1).dataSync();
    let correct = 0;
    for (let i = 0; i < labels.length; i++) if (predicted[i] === labels[i]) correct++;
    return correct;
  });
}
