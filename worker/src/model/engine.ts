/**
 * What the training loop needs from a compute engine, whichever runs the model: tfjs (Trainer,
 * trainer.ts) or ONNX Runtime (OnnxTrainer, ../onnx/onnx-trainer.ts). Both take the same model
 * definition (models.ts) and give the same parameter names, shapes and gradients; the engine never
 * applies an optimizer (the parameter server does).
 *
 * Also the checks both engines make on what they are given, so that a bad tensor or batch is refused
 * with the same message by either, before anything changes.
 */
import { elementCount, type NamedTensor } from "@distributed-ps/common/named-tensor.ts";

export type EngineName = "onnxruntime" | "tfjs";

export interface GradientResult {
  /** d(mean loss)/d(weight) for every trainable weight, same names and order as parameters(). */
  readonly gradients: NamedTensor[];
  /** Mean softmax cross-entropy over the batch (nats per example), before any update. */
  readonly loss: number;
  /** Examples in the batch whose argmax logit equals the label. */
  readonly correct: number;
}

export interface Evaluation {
  /** Mean softmax cross-entropy per example (nats). */
  readonly loss: number;
  /** Fraction of examples classified correctly, in [0, 1]. */
  readonly accuracy: number;
}

export interface ParameterSpec {
  readonly name: string;
  readonly shape: readonly number[];
}

export interface TrainingEngine {
  readonly engine: EngineName;
  /** Shape of one example, without the batch dimension. */
  readonly inputShape: readonly number[];
  /** Values per example: product of inputShape. */
  readonly features: number;
  readonly classes: number;
  /** Names and shapes of the trainable weights, in parameters() order. */
  parameterSpecs(): ParameterSpec[];
  /** Copies of the current trainable weights. */
  parameters(): NamedTensor[];
  /** Replaces every trainable weight (validated first: a refused call changes nothing). */
  setParameters(tensors: readonly NamedTensor[]): void;
  /** Copies of the non-trainable weights (batch norm running statistics); empty if none. */
  nonTrainableState(): NamedTensor[];
  /** Replaces non-trainable weights by name (a subset is fine). */
  setNonTrainableState(tensors: readonly NamedTensor[]): void;
  /** Gradients of the mean softmax cross-entropy over one batch at the current weights; in training
   *  mode, so batch norm's running statistics move with the batch. */
  gradients(x: Float32Array, y: Int32Array, count: number): GradientResult | Promise<GradientResult>;
  /** Mean loss and accuracy over `count` examples, in chunks of `batchSize`. */
  evaluate(x: Float32Array, y: Int32Array, count: number, batchSize?: number): Evaluation | Promise<Evaluation>;
  /** The model as an ONNX inference graph with its parameters and non-trainable state as graph
   *  inputs named as the tensors (../onnx/graphs.ts inferenceGraph): what the server fills with the
   *  trained values to export model.onnx. */
  inferenceGraph(): Uint8Array;
  /** Frees what the engine holds; it must not be used afterwards. */
  dispose(): void;
}

/** Refuses (with the first reason found) anything but exactly one tensor of the right shape per
 *  spec, so that nothing is assigned from a partly wrong set. */
export function checkParameters(specs: readonly ParameterSpec[], tensors: readonly NamedTensor[], what = "setParameters"): void {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const seen = new Set<string>();
  for (const tensor of tensors) {
    const spec = byName.get(tensor.name);
    if (spec === undefined) {
      throw new Error(`${what}: unknown tensor "${tensor.name}"; the model's weights are ${specs.map((s) => s.name).join(", ")}`);
    }
    if (seen.has(tensor.name)) throw new Error(`${what}: tensor "${tensor.name}" given twice`);
    seen.add(tensor.name);
    checkShape(spec, tensor, what);
  }
  const missing = specs.filter((s) => !seen.has(s.name)).map((s) => s.name);
  if (missing.length > 0) throw new Error(`${what}: missing tensor(s) ${missing.map((n) => `"${n}"`).join(", ")}`);
}

/** Refuses a tensor whose shape or value count is not the spec's. */
export function checkShape(spec: ParameterSpec, tensor: NamedTensor, what: string): void {
  if (!sameShape(tensor.shape, spec.shape)) {
    throw new Error(`${what}: tensor "${tensor.name}" has shape [${tensor.shape.join(", ")}], the model expects [${spec.shape.join(", ")}]`);
  }
  if (tensor.data.length !== elementCount(spec.shape)) {
    throw new Error(`${what}: tensor "${tensor.name}" has ${tensor.data.length} values, its shape [${spec.shape.join(", ")}] needs ${elementCount(spec.shape)}`);
  }
}

/** Refuses a batch whose sizes disagree or whose labels are outside [0, classes). */
export function checkBatch(x: Float32Array, y: Int32Array, count: number, features: number, classes: number): void {
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`count must be an integer >= 0, got ${count}`);
  if (x.length !== count * features) {
    throw new RangeError(`x has ${x.length} values but count * features is ${count} * ${features}`);
  }
  if (y.length !== count) throw new RangeError(`y has ${y.length} labels but count is ${count}`);
  // An out-of-range label would silently one-hot to all zeros (zero loss, zero gradient).
  const bad = y.findIndex((label) => !(label >= 0 && label < classes));
  if (bad >= 0) throw new RangeError(`label ${y[bad]} of example ${bad} is outside [0, ${classes})`);
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
