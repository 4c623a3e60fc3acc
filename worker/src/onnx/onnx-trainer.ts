/**
 * The onnxruntime engine: the model's forward and backward pass as one ONNX graph (graphs.ts) run by
 * ONNX Runtime's CPU library, several times faster per step than tfjs on wasm (see docs/datasets-and-models.md,
 * "Compute engines"). Same contract as the tfjs Trainer (engine.ts): parameters in, loss and gradients out,
 * no optimizer; batch norm's running statistics stay in this process and move with every step.
 *
 * The model is built once with tfjs-layers (models.ts) for its architecture, names and seeded
 * initial weights; after that tfjs takes no part in a step.
 */
import type * as tfl from "@tensorflow/tfjs-layers";
import { elementCount, type NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { checkBatch, checkParameters, checkShape, type Evaluation, type GradientResult, type ParameterSpec, type TrainingEngine } from "../model/engine.ts";
import { evaluationGraph, GRADIENT_PREFIX, inferenceGraph, inferenceModel, STATE_PREFIX, trainingGraph } from "./graphs.ts";
import { defaultThreads, loadOnnxRuntime, openSession, type OnnxRuntime } from "./runtime.ts";
import type * as Ort from "onnxruntime-node";

interface Slot {
  readonly name: string;
  readonly shape: readonly number[];
  data: Float32Array;
  tensor: Ort.Tensor;
}

export interface OnnxTrainerOptions {
  /** Threads inside each operator; default: the cores this process may use. */
  readonly threads?: number;
}

export class OnnxTrainer implements TrainingEngine {
  readonly engine = "onnxruntime" as const;
  readonly inputShape: readonly number[];
  readonly features: number;
  readonly classes: number;
  readonly threads: number;
  readonly #ort: OnnxRuntime;
  readonly #model: tfl.LayersModel;
  readonly #training: Ort.InferenceSession;
  readonly #evaluation: Ort.InferenceSession;
  readonly #parameters: readonly Slot[];
  readonly #parameterByName: ReadonlyMap<string, Slot>;
  readonly #state: readonly Slot[];

  /** Builds the graphs of `model` (which it takes ownership of) and opens them in ONNX Runtime.
   *  Rejects with one line if ONNX Runtime cannot load or refuses a graph. */
  static async create(model: tfl.LayersModel, options: OnnxTrainerOptions = {}): Promise<OnnxTrainer> {
    const ort = await loadOnnxRuntime();
    const threads = options.threads ?? defaultThreads();
    if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer, got ${threads}`);
    const training = trainingGraph(model);
    const evaluation = evaluationGraph(model);
    const trainingSession = await openSession(training.bytes, `the training graph of model "${model.name}"`, threads);
    const evaluationSession = await openSession(evaluation.bytes, `the evaluation graph of model "${model.name}"`, threads);
    return new OnnxTrainer(ort, model, trainingSession, evaluationSession, threads);
  }

  private constructor(ort: OnnxRuntime, model: tfl.LayersModel, training: Ort.InferenceSession, evaluation: Ort.InferenceSession, threads: number) {
    this.#ort = ort;
    this.#model = model;
    this.#training = training;
    this.#evaluation = evaluation;
    this.threads = threads;
    const inputShape = model.inputs[0]!.shape.slice(1) as number[];
    this.inputShape = inputShape;
    this.features = elementCount(inputShape);
    this.classes = model.outputs[0]!.shape[1] as number;
    // The seeded initial values, read once from the tfjs model.
    const slot = (w: tfl.LayerVariable): Slot => {
      const data = new Float32Array(w.read().dataSync() as Float32Array);
      return { name: w.originalName, shape: [...w.shape] as number[], data, tensor: new ort.Tensor("float32", data, [...w.shape] as number[]) };
    };
    this.#parameters = model.trainableWeights.map(slot);
    this.#parameterByName = new Map(this.#parameters.map((p) => [p.name, p]));
    this.#state = model.nonTrainableWeights.map(slot);
  }

  parameterSpecs(): ParameterSpec[] {
    return this.#parameters.map(({ name, shape }) => ({ name, shape }));
  }

  parameters(): NamedTensor[] {
    return this.#parameters.map(({ name, shape, data }) => ({ name, shape, data: new Float32Array(data) }));
  }

  setParameters(tensors: readonly NamedTensor[]): void {
    checkParameters(this.#parameters, tensors);
    // Copied: the caller's arrays may be reused (a pull's buffers) while the graph still reads these.
    for (const t of tensors) this.#parameterByName.get(t.name)!.data.set(t.data);
  }

  nonTrainableState(): NamedTensor[] {
    return this.#state.map(({ name, shape, data }) => ({ name, shape, data: new Float32Array(data) }));
  }

  setNonTrainableState(tensors: readonly NamedTensor[]): void {
    const byName = new Map(this.#state.map((s) => [s.name, s]));
    for (const t of tensors) {
      const slot = byName.get(t.name);
      if (slot === undefined) throw new Error(`setNonTrainableState: unknown tensor "${t.name}"`);
      checkShape(slot, t, "setNonTrainableState");
    }
    for (const t of tensors) byName.get(t.name)!.data.set(t.data);
  }

  async gradients(x: Float32Array, y: Int32Array, count: number): Promise<GradientResult> {
    checkBatch(x, y, count, this.features, this.classes);
    if (count === 0) throw new RangeError("gradients: the batch is empty");
    const out = await this.#training.run(this.#feeds(x, y, count));
    // The running statistics move with the batch, as in tfjs's training mode.
    for (const s of this.#state) {
      s.data = out[STATE_PREFIX + s.name]!.data as Float32Array;
      s.tensor = new this.#ort.Tensor("float32", s.data, [...s.shape]);
    }
    return {
      gradients: this.#parameters.map(({ name, shape }) => ({ name, shape, data: out[GRADIENT_PREFIX + name]!.data as Float32Array })),
      loss: scalar(out.loss!),
      correct: scalar(out.correct!),
    };
  }

  async evaluate(x: Float32Array, y: Int32Array, count: number, batchSize = 512): Promise<Evaluation> {
    checkBatch(x, y, count, this.features, this.classes);
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`evaluate: batchSize must be a positive integer, got ${batchSize}`);
    if (count === 0) return { loss: Number.NaN, accuracy: Number.NaN };
    let lossSum = 0;
    let correct = 0;
    for (let start = 0; start < count; start += batchSize) {
      const n = Math.min(batchSize, count - start);
      const out = await this.#evaluation.run(this.#feeds(x.subarray(start * this.features, (start + n) * this.features), y.subarray(start, start + n), n));
      lossSum += scalar(out.loss!) * n;
      correct += scalar(out.correct!);
    }
    return { loss: lossSum / count, accuracy: correct / count };
  }

  inferenceGraph(): Uint8Array {
    return inferenceGraph(this.#model);
  }

  /** The model with its current parameters and running statistics as a self-contained ONNX
   *  inference graph (input "input", outputs "logits" and "probabilities"). */
  inferenceModel(metadata: Record<string, string> = {}): Uint8Array {
    return inferenceModel(this.#model, [...this.#parameters, ...this.#state], metadata);
  }

  dispose(): void {
    void this.#training.release();
    void this.#evaluation.release();
    this.#model.dispose();
  }

  #feeds(x: Float32Array, y: Int32Array, count: number): Record<string, Ort.Tensor> {
    const feeds: Record<string, Ort.Tensor> = {
      x: new this.#ort.Tensor("float32", x, [count, ...this.inputShape]),
      labels: new this.#ort.Tensor("int32", y, [count]),
    };
    for (const p of this.#parameters) feeds[p.name] = p.tensor;
    for (const s of this.#state) feeds[s.name] = s.tensor;
    return feeds;
  }
}

function scalar(tensor: Ort.Tensor): number {
  if (tensor.size !== 1) throw new Error(`expected a scalar output, got dims [${tensor.dims.join(", ")}]`);
  return Number(tensor.data[0]);
}
