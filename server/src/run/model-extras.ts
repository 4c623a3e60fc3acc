/**
 * What the workers said of the model at Finish (ModelExtras) that the parameters do not hold: each
 * finished slot's non-trainable state (batch-norm running statistics) and the model's inference graph
 * with its weights as named inputs. The exported model takes the mean state over the slots that sent
 * one, and model.onnx is that graph with the trained tensors bound into it.
 *
 * The server stays model-agnostic: it checks names, shapes and sizes, averages tensors by name and
 * fills graph inputs by name; it never reads the graph's operators. Everything here is kept in the
 * checkpoints, so a restarted server exports the same model.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { ModelExtras } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { elementCount, type NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { checkBinding, MAX_INFERENCE_GRAPH_BYTES, parseTemplate, TemplateError } from "@distributed-ps/common/onnx/bind-initializers.ts";

export interface ExtrasSnapshot {
  readonly graph: Uint8Array | undefined;
  /** Each slot's state, by slot index. */
  readonly state: ReadonlyMap<number, readonly NamedTensor[]>;
}

export class ModelExtrasStore {
  #graph: Uint8Array | undefined;
  readonly #state = new Map<number, NamedTensor[]>();

  /**
   * @param parameterShape the shape of a parameter this server holds, undefined for other names
   * @param holdsEveryParameter false on a shard of a sharded run: the graph's other weights are elsewhere
   */
  readonly parameterShape: (name: string) => readonly number[] | undefined;
  readonly holdsEveryParameter: boolean;

  constructor(parameterShape: (name: string) => readonly number[] | undefined, holdsEveryParameter: boolean) {
    this.parameterShape = parameterShape;
    this.holdsEveryParameter = holdsEveryParameter;
  }

  get graph(): Uint8Array | undefined {
    return this.#graph;
  }

  /** Slots whose state is kept. */
  get reports(): number {
    return this.#state.size;
  }

  /**
   * Keeps what `slot`'s worker sent, after checking all of it; throws InvalidArgument naming the first
   * problem, having kept nothing. A slot that reports again replaces its earlier state.
   */
  record(slot: number, extras: ModelExtras): void {
    const state = this.#checkState(extras);
    if (extras.inferenceGraph.length > 0) this.#checkGraph(extras.inferenceGraph, state);
    this.#state.set(slot, state);
    if (extras.inferenceGraph.length > 0) this.#graph = extras.inferenceGraph.slice();
  }

  /** Per state name, the mean over the slots that sent it; in the first report's order. */
  averagedState(): NamedTensor[] {
    const sums = new Map<string, { shape: readonly number[]; sum: Float64Array; count: number }>();
    for (const tensors of this.#state.values()) {
      for (const t of tensors) {
        let entry = sums.get(t.name);
        if (entry === undefined) sums.set(t.name, (entry = { shape: t.shape, sum: new Float64Array(t.data.length), count: 0 }));
        for (let i = 0; i < t.data.length; i++) entry.sum[i]! += t.data[i]!;
        entry.count++;
      }
    }
    return [...sums].map(([name, { shape, sum, count }]) => ({ name, shape, data: Float32Array.from(sum, (v) => v / count) }));
  }

  snapshot(): ExtrasSnapshot {
    return { graph: this.#graph, state: new Map(this.#state) };
  }

  restore(s: ExtrasSnapshot): void {
    this.#graph = s.graph;
    this.#state.clear();
    for (const [slot, tensors] of s.state) this.#state.set(slot, [...tensors]);
  }

  #checkState(extras: ModelExtras): NamedTensor[] {
    const seen = new Set<string>();
    const known = new Map(this.#knownShapes());
    const tensors: NamedTensor[] = [];
    for (const chunk of extras.state) {
      const what = `model_extras.state "${chunk.name}"`;
      if (chunk.name === "") throw invalid("model_extras.state: a tensor has no name");
      if (seen.has(chunk.name)) throw invalid(`${what} is given twice`);
      seen.add(chunk.name);
      if (this.parameterShape(chunk.name) !== undefined) throw invalid(`${what} has the name of a parameter`);
      if (chunk.sparse || chunk.byteOffset !== 0n) throw invalid(`${what} must be whole and dense (byte_offset 0, not sparse)`);
      if (!chunk.shape.every((d) => Number.isInteger(d) && d > 0)) throw invalid(`${what} has shape [${chunk.shape.join(", ")}]: every dimension must be positive`);
      const count = elementCount(chunk.shape);
      if (chunk.data.length !== count * 4) throw invalid(`${what} has ${chunk.data.length} bytes, its shape [${chunk.shape.join(", ")}] needs ${count * 4} (float32)`);
      const earlier = known.get(chunk.name);
      if (earlier !== undefined && earlier.join() !== chunk.shape.join()) {
        throw invalid(`${what} has shape [${chunk.shape.join(", ")}], other workers sent [${earlier.join(", ")}]`);
      }
      // Copied into an aligned array: the message's bytes may sit at any offset.
      const data = new Float32Array(count);
      new Uint8Array(data.buffer).set(chunk.data);
      tensors.push({ name: chunk.name, shape: [...chunk.shape], data });
    }
    return tensors;
  }

  #checkGraph(bytes: Uint8Array, state: readonly NamedTensor[]): void {
    if (bytes.length > MAX_INFERENCE_GRAPH_BYTES) throw invalid(`model_extras.inference_graph has ${bytes.length} bytes, at most ${MAX_INFERENCE_GRAPH_BYTES} are accepted`);
    const shapes = new Map<string, { shape: readonly number[] }>(state.map((t) => [t.name, t]));
    try {
      const model = parseTemplate(bytes);
      for (const input of model.graph!.input) {
        const shape = this.parameterShape(input.name);
        if (shape !== undefined) shapes.set(input.name, { shape });
      }
      const left = checkBinding(model, shapes);
      if (this.holdsEveryParameter && left.length !== 1) {
        throw new TemplateError(`once the weights are bound it must keep one data input, it keeps ${left.map((n) => `"${n}"`).join(", ")}: no tensor of those names`);
      }
    } catch (err) {
      if (err instanceof TemplateError) throw invalid(`model_extras.inference_graph: ${err.message}`);
      throw err;
    }
  }

  /** The shapes of the state tensors kept so far, by name. */
  #knownShapes(): [string, readonly number[]][] {
    return [...this.#state.values()].flatMap((tensors) => tensors.map((t): [string, readonly number[]] => [t.name, t.shape]));
  }
}

function invalid(message: string): ConnectError {
  return new ConnectError(`Finish: ${message}`, Code.InvalidArgument);
}
