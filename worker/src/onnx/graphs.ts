/**
 * The three ONNX graphs made from one model definition:
 *
 *   training    inputs: every parameter by name, every batch-norm running statistic by name, the
 *               batch "x" [N, ...inputShape] and "labels" [N] (INT32);
 *               outputs: "loss" (mean softmax cross-entropy), "correct" (examples whose argmax is the
 *               label), "grad/<parameter>" for every parameter, "state/<statistic>" the running
 *               statistics moved by this batch (momentum as the model defines it).
 *   evaluation  the same inputs, batch norm with the running statistics; outputs "loss", "correct".
 *   inference   the exported model: input "input" [N, ...inputShape] (NHWC images, as the datasets
 *               hold them), outputs "logits" and "probabilities" [N, classes]; made as a template
 *               with the weights as inputs, which the parameter server fills with the trained
 *               values (model.onnx). ONNX Runtime (any language) runs the result as it is.
 */
import type * as tfl from "@tensorflow/tfjs-layers";
import { DataType, type Value } from "@distributed-ps/common/onnx/graph-builder.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { bindInitializers } from "@distributed-ps/common/onnx/bind-initializers.ts";
import { translateLayers } from "./from-layers.ts";
import { Tape } from "./tape.ts";

export const GRADIENT_PREFIX = "grad/";
export const STATE_PREFIX = "state/";

export interface ModelGraph {
  /** ONNX binary (ModelProto). */
  readonly bytes: Uint8Array;
  /** Graph input names: the parameters and running statistics, in the model's weight order. */
  readonly parameters: readonly string[];
  readonly state: readonly string[];
}

function inputShapeOf(model: tfl.LayersModel): number[] {
  const shape = model.inputs[0]!.shape.slice(1);
  if (!shape.every((d): d is number => typeof d === "number")) throw new Error(`model "${model.name}" needs a fully known input shape`);
  return shape;
}

/** The batch inputs of the training and evaluation graphs: "x" [N, ...inputShape], "labels" [N]. */
function batchInputs(tape: Tape, model: tfl.LayersModel): { x: Value; labels: Value } {
  return { x: tape.input("x", [null, ...inputShapeOf(model)]), labels: tape.input("labels", [null], DataType.INT32) };
}

export function trainingGraph(model: tfl.LayersModel): ModelGraph {
  const tape = new Tape();
  const { x, labels } = batchInputs(tape, model);
  const parameters: Value[] = [];
  const state: Value[] = [];
  const { logits, batchNormUpdates } = translateLayers(model, tape, x, "training", (name, shape, kind) => {
    const value = kind === "parameter" ? tape.parameter(name, shape) : tape.input(name, shape);
    (kind === "parameter" ? parameters : state).push(value);
    return value;
  });
  const loss = tape.softmaxCrossEntropy(logits, labels);
  tape.graph.output(loss, "loss");
  tape.graph.output(tape.correctCount(logits, labels), "correct");
  const gradients = tape.gradients(loss, parameters);
  parameters.forEach((p, i) => tape.graph.output(gradients[i]!, GRADIENT_PREFIX + p.name));
  const byName = new Map(state.map((v) => [v.name, v]));
  for (const u of batchNormUpdates) {
    // running ← running · momentum + batch · (1 - momentum), tfjs-layers' update (biased variance).
    for (const [name, batch] of [[u.movingMean, u.mean], [u.movingVariance, u.variance]] as const) {
      const running = byName.get(name)!;
      const c = running.shape;
      const kept = tape.graph.op("Mul", [running, tape.graph.constant("momentum", new Float32Array([u.momentum]), [])], {}, c);
      const moved = tape.graph.op("Mul", [batch, tape.graph.constant("one_minus_momentum", new Float32Array([1 - u.momentum]), [])], {}, c);
      tape.graph.output(tape.graph.op("Add", [kept, moved], {}, c), STATE_PREFIX + name);
    }
  }
  return { bytes: tape.graph.bytes(`${model.name}_training`), parameters: parameters.map((p) => p.name), state: state.map((s) => s.name) };
}

export function evaluationGraph(model: tfl.LayersModel): ModelGraph {
  const tape = new Tape();
  const { x, labels } = batchInputs(tape, model);
  const parameters: string[] = [];
  const state: string[] = [];
  const { logits } = translateLayers(model, tape, x, "inference", (name, shape, kind) => {
    (kind === "parameter" ? parameters : state).push(name);
    return tape.input(name, shape);
  });
  tape.graph.output(tape.softmaxCrossEntropy(logits, labels), "loss");
  tape.graph.output(tape.correctCount(logits, labels), "correct");
  return { bytes: tape.graph.bytes(`${model.name}_evaluation`), parameters, state };
}

/**
 * The model as an ONNX inference graph whose parameters and running statistics are graph inputs,
 * named as the tensors: the template the parameter server fills with the trained values to export
 * model.onnx (ModelExtras.inference_graph). Input "input" [N, ...inputShape] (NHWC images, as the
 * datasets hold them); outputs "logits" and "probabilities" [N, classes].
 */
export function inferenceGraph(model: tfl.LayersModel): Uint8Array {
  const tape = new Tape();
  const input = tape.input("input", [null, ...inputShapeOf(model)]);
  const { logits } = translateLayers(model, tape, input, "inference", (name, shape) => tape.input(name, shape));
  tape.graph.output(logits, "logits");
  tape.graph.output(tape.graph.op("Softmax", [logits], { axis: { int: 1 } }, logits.shape), "probabilities");
  return tape.graph.bytes(model.name);
}

/** The trained model as a self-contained ONNX inference graph: `weights` must hold every parameter
 *  and running statistic the model has, by name (what the server does with inferenceGraph). */
export function inferenceModel(model: tfl.LayersModel, weights: readonly NamedTensor[], metadata: Record<string, string> = {}): Uint8Array {
  try {
    return bindInitializers(inferenceGraph(model), weights, metadata);
  } catch (err) {
    throw new Error(`exporting model "${model.name}": ${(err as Error).message}`);
  }
}
