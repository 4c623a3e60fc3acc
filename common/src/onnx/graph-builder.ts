/**
 * Builds ONNX graphs with the typed messages Buf generates from ONNX's own schema
 * (proto/onnx/onnx.proto -> gen/onnx/onnx_pb.js). A value is a name plus the shape this program
 * knows for it (the batch dimension is `null`: it is known only when the graph runs); nodes are
 * appended in order, which is a topological order because a node can only use values made before it.
 *
 * The worker builds its training and evaluation graphs with it (worker/src/onnx/), and a trained
 * model is exported as one (model.onnx): the same builder, the parameters as initializers.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import {
  AttributeProto_AttributeType as AttrType,
  AttributeProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  TensorProto_DataType as DataType,
  TensorProtoSchema,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
  type AttributeProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from "../gen/onnx/onnx_pb.js";

export { TensorProto_DataType as DataType } from "../gen/onnx/onnx_pb.js";

/** ONNX IR version 8 and the default-domain opset 17: what ONNX 1.12 (the vendored schema) defines,
 *  and what every ONNX Runtime since 1.13 runs. */
export const IR_VERSION = 8n;
export const OPSET = 17n;

/** A dimension: its size, or null for the batch dimension (named "N" in the graph). */
export type Dim = number | null;
export type Shape = readonly Dim[];

export interface Value {
  readonly name: string;
  readonly shape: Shape;
}

/** An attribute's value, tagged so that an integer list is never mistaken for a float list. */
export type Attribute =
  | { readonly int: number }
  | { readonly ints: readonly number[] }
  | { readonly float: number }
  | { readonly floats: readonly number[] }
  | { readonly tensor: TensorProto };

export const int = (value: number): Attribute => ({ int: value });
export const ints = (values: readonly number[]): Attribute => ({ ints: values });
export const float = (value: number): Attribute => ({ float: value });

/** Element types this project puts in graphs, with their TypedArrays. */
export type TensorData = Float32Array | Int32Array | BigInt64Array;

/** A TensorProto holding `data` in raw little-endian bytes (ONNX's raw_data), of `shape`. */
export function tensorProto(name: string, data: TensorData, shape: readonly number[]): TensorProto {
  const size = shape.reduce((a, b) => a * b, 1);
  if (data.length !== size) throw new RangeError(`tensor "${name}": ${data.length} values for shape [${shape.join(", ")}]`);
  const dataType = data instanceof Float32Array ? DataType.FLOAT : data instanceof Int32Array ? DataType.INT32 : DataType.INT64;
  return create(TensorProtoSchema, {
    name,
    dims: shape.map(BigInt),
    dataType,
    // A copy: raw_data must not alias memory the caller may reuse before the message is encoded.
    rawData: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)),
  });
}

export class GraphBuilder {
  readonly #nodes: NodeProto[] = [];
  readonly #inputs: ValueInfoProto[] = [];
  readonly #outputs: ValueInfoProto[] = [];
  readonly #initializers: TensorProto[] = [];
  readonly #names = new Set<string>();
  #counter = 0;

  /** A graph input of element type `type` (FLOAT by default). The name is kept as given. */
  input(name: string, shape: Shape, type: DataType = DataType.FLOAT): Value {
    this.#claim(name);
    this.#inputs.push(valueInfo(name, shape, type));
    return { name, shape };
  }

  /** Makes `value` a graph output called `name` (through an Identity node if it has another name). */
  output(value: Value, name = value.name, type: DataType = DataType.FLOAT): Value {
    let out = value;
    if (name !== value.name) {
      this.#claim(name);
      this.#nodes.push(node("Identity", [value.name], [name], {}, `${name}/identity`));
      out = { name, shape: value.shape };
    }
    this.#outputs.push(valueInfo(out.name, out.shape, type));
    return out;
  }

  /** A constant stored in the graph (an initializer) under a fresh name based on `hint`. */
  constant(hint: string, data: TensorData, shape: readonly number[]): Value {
    const name = this.fresh(hint);
    this.#initializers.push(tensorProto(name, data, shape));
    return { name, shape };
  }

  /** A named initializer that is not a graph input: how an exported model carries its weights. */
  initializer(name: string, data: TensorData, shape: readonly number[]): Value {
    this.#claim(name);
    this.#initializers.push(tensorProto(name, data, shape));
    return { name, shape };
  }

  /** Appends one node with one output of shape `shape`; returns that output. */
  op(opType: string, inputs: readonly (Value | undefined)[], attributes: Record<string, Attribute>, shape: Shape, hint = opType): Value {
    const [out] = this.opN(opType, inputs, attributes, [shape], hint);
    return out!;
  }

  /** Appends one node with one output per entry of `shapes` (an ONNX optional input is undefined). */
  opN(opType: string, inputs: readonly (Value | undefined)[], attributes: Record<string, Attribute>, shapes: readonly Shape[], hint = opType): Value[] {
    const outputs = shapes.map((shape, i) => ({ name: this.fresh(shapes.length > 1 ? `${hint}:${i}` : hint), shape }));
    this.#nodes.push(node(opType, inputs.map((v) => v?.name ?? ""), outputs.map((o) => o.name), attributes, this.fresh(`${hint}/node`)));
    return outputs;
  }

  /** A name not used yet in this graph, from `hint`. */
  fresh(hint: string): string {
    let name = hint;
    while (this.#names.has(name)) name = `${hint}_${++this.#counter}`;
    this.#names.add(name);
    return name;
  }

  /** The whole model: IR 8, opset 17, this graph. */
  model(graphName: string, docString = ""): ModelProto {
    return create(ModelProtoSchema, {
      irVersion: IR_VERSION,
      opsetImport: [create(OperatorSetIdProtoSchema, { domain: "", version: OPSET })],
      producerName: "distributed-ps",
      docString,
      graph: create(GraphProtoSchema, {
        name: graphName,
        node: this.#nodes,
        input: this.#inputs,
        output: this.#outputs,
        initializer: this.#initializers,
      }),
    });
  }

  /** The model in ONNX's binary form, as InferenceSession.create and onnx.load read it. */
  bytes(graphName: string, docString = ""): Uint8Array {
    return toBinary(ModelProtoSchema, this.model(graphName, docString));
  }

  #claim(name: string): void {
    if (this.#names.has(name)) throw new Error(`the graph already has a value named "${name}"`);
    this.#names.add(name);
  }
}

function node(opType: string, input: string[], output: string[], attributes: Record<string, Attribute>, name: string): NodeProto {
  return create(NodeProtoSchema, {
    opType,
    input,
    output,
    name,
    attribute: Object.entries(attributes).map(([key, value]) => attribute(key, value)),
  });
}

function attribute(name: string, value: Attribute): AttributeProto {
  if ("int" in value) return create(AttributeProtoSchema, { name, type: AttrType.INT, i: BigInt(value.int) });
  if ("ints" in value) return create(AttributeProtoSchema, { name, type: AttrType.INTS, ints: value.ints.map(BigInt) });
  if ("float" in value) return create(AttributeProtoSchema, { name, type: AttrType.FLOAT, f: value.float });
  if ("floats" in value) return create(AttributeProtoSchema, { name, type: AttrType.FLOATS, floats: [...value.floats] });
  return create(AttributeProtoSchema, { name, type: AttrType.TENSOR, t: value.tensor });
}

function valueInfo(name: string, shape: Shape, type: DataType): ValueInfoProto {
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: "tensorType",
        value: create(TypeProto_TensorSchema, {
          elemType: type,
          shape: create(TensorShapeProtoSchema, {
            dim: shape.map((d) =>
              create(TensorShapeProto_DimensionSchema, { value: d === null ? { case: "dimParam", value: "N" } : { case: "dimValue", value: BigInt(d) } })),
          }),
        }),
      },
    }),
  });
}
