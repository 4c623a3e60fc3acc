/**
 * Turns an ONNX graph whose weights are graph inputs (a "template", as a worker sends it in
 * ModelExtras.inference_graph) into a self-contained model: every input named as one of the given
 * tensors becomes an initializer holding that tensor's values. The rest of the graph is left as it
 * is — the server that exports model.onnx never needs to know the model's operators.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema, StringStringEntryProtoSchema, TensorProto_DataType as DataType, type ModelProto, type ValueInfoProto } from "../gen/onnx/onnx_pb.js";
import type { NamedTensor } from "../named-tensor.ts";
import { tensorProto } from "./graph-builder.ts";

/** A float graph input's name and shape (`null` for a symbolic dimension such as the batch). */
export interface TemplateInput {
  readonly name: string;
  readonly shape: readonly (number | null)[];
}

/** ModelExtras.inference_graph's bound (the proto's): a graph without its weights is far smaller. */
export const MAX_INFERENCE_GRAPH_BYTES = 4 << 20;

export class TemplateError extends Error {
  override name = "TemplateError";
}

/** Parses a template; throws TemplateError saying what is wrong if it is no ONNX model with a graph. */
export function parseTemplate(bytes: Uint8Array): ModelProto {
  let model: ModelProto;
  try {
    model = fromBinary(ModelProtoSchema, bytes);
  } catch (err) {
    throw new TemplateError(`the inference graph is not an ONNX ModelProto (${(err as Error).message})`);
  }
  if (model.graph === undefined || model.graph.node.length === 0) throw new TemplateError("the inference graph has no graph or no nodes");
  if (model.graph.output.length === 0) throw new TemplateError("the inference graph has no outputs");
  return model;
}

/** The graph's inputs with their shapes; throws TemplateError for an input that is not a float tensor
 *  of known rank. */
export function templateInputs(model: ModelProto): TemplateInput[] {
  return model.graph!.input.map(describeInput);
}

/**
 * Checks that every tensor of `tensors` named by a graph input has the input's shape; returns the
 * names of the inputs no tensor is named after (the model's data inputs, if all is well). Throws
 * TemplateError naming the first mismatch.
 */
export function checkBinding(model: ModelProto, tensors: ReadonlyMap<string, { readonly shape: readonly number[] }>): string[] {
  const left: string[] = [];
  for (const input of templateInputs(model)) {
    const tensor = tensors.get(input.name);
    if (tensor === undefined) {
      left.push(input.name);
      continue;
    }
    const fits = tensor.shape.length === input.shape.length && input.shape.every((d, i) => d === tensor.shape[i]);
    if (!fits) {
      throw new TemplateError(`graph input "${input.name}" has shape [${input.shape.map((d) => d ?? "N").join(", ")}] but the tensor of that name is [${tensor.shape.join(", ")}]`);
    }
  }
  return left;
}

/**
 * The model with every input named as a tensor of `tensors` made an initializer holding it, and
 * `metadata` added to its metadata_props; the model's bytes. Throws TemplateError if a shape differs
 * (checkBinding) or if other than `dataInputs` inputs would be left unbound.
 */
export function bindInitializers(template: Uint8Array, tensors: readonly NamedTensor[], metadata: Record<string, string> = {}, dataInputs = 1): Uint8Array {
  const model = parseTemplate(template);
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const left = checkBinding(model, byName);
  if (left.length !== dataInputs) {
    const unbound = left.length > dataInputs ? `; no tensor for ${left.map((n) => `"${n}"`).join(", ")}` : "";
    throw new TemplateError(`the graph must keep ${dataInputs} data input(s) once the weights are bound, it would keep ${left.length}${unbound}`);
  }
  const graph = model.graph!;
  const bound = graph.input.filter((i) => byName.has(i.name));
  graph.input = graph.input.filter((i) => !byName.has(i.name));
  for (const input of bound) {
    const t = byName.get(input.name)!;
    graph.initializer.push(tensorProto(t.name, t.data, t.shape));
  }
  for (const [key, value] of Object.entries(metadata)) model.metadataProps.push(create(StringStringEntryProtoSchema, { key, value }));
  return toBinary(ModelProtoSchema, model);
}

function describeInput(input: ValueInfoProto): TemplateInput {
  const type = input.type?.value;
  if (type?.case !== "tensorType" || type.value.elemType !== DataType.FLOAT || type.value.shape === undefined) {
    // Bound inputs must be float32 (the server's tensors are); a data input could be anything, but
    // the models this project exports take float images or features.
    throw new TemplateError(`graph input "${input.name}" is not a float tensor of known rank`);
  }
  const shape = type.value.shape.dim.map((d) => (d.value.case === "dimValue" ? Number(d.value.value) : null));
  return { name: input.name, shape };
}
