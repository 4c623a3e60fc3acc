/**
 * Translates a model defined with tfjs-layers (worker/src/model/: the one definition of every
 * architecture) into ONNX operations on a Tape, layer by layer in the model's topological order.
 * The tfjs model stays the source of truth for architecture, parameter names, shapes and seeded
 * initial values; this file only says what each layer computes, in ONNX terms.
 *
 * Parameters keep tfjs's names and layouts as the server stores them (conv kernels [kh, kw, in, out],
 * dense kernels [in, out]); images come in NHWC as the datasets hold them. Convolutions and pooling
 * run in NCHW, ONNX's layout: the translation transposes where the layout changes (once after the
 * input, once before a flatten) and transposes conv kernels inside the graph, so the gradients come
 * out in the server's layouts too.
 *
 * A layer or setting with no translation here fails the translation with its name, so an engine
 * never trains a model other than the one defined.
 */
import type * as tfl from "@tensorflow/tfjs-layers";
import type { Value } from "@distributed-ps/common/onnx/graph-builder.ts";
import type { Tape } from "./tape.ts";

/** Whether batch norm uses the batch's statistics (training) or the running ones (inference). */
export type Phase = "training" | "inference";

/** Where a weight's value comes from in the graph being built: a graph input, or an initializer. */
export type WeightSource = (name: string, shape: readonly number[], kind: "parameter" | "state") => Value;

export interface BatchNormUpdate {
  /** Names of the running statistics, e.g. "stem_bn/moving_mean". */
  readonly movingMean: string;
  readonly movingVariance: string;
  readonly momentum: number;
  /** The batch's mean and (biased) variance, [C]. */
  readonly mean: Value;
  readonly variance: Value;
}

export interface Translation {
  /** [N, classes]. */
  readonly logits: Value;
  /** In training: one per batch-norm layer, to update its running statistics from. */
  readonly batchNormUpdates: readonly BatchNormUpdate[];
}

/** A value and the layout its 4-D data is in (2-D values are "flat"). */
interface Activation {
  readonly value: Value;
  readonly layout: "nhwc" | "nchw" | "flat";
}

type LayerConfig = Record<string, unknown>;

export function translateLayers(model: tfl.LayersModel, tape: Tape, input: Value, phase: Phase, weight: WeightSource): Translation {
  const outputs = new Map<string, Activation>();
  const updates: BatchNormUpdate[] = [];
  const toNchw = (a: Activation): Value => (a.layout === "nchw" ? a.value : tape.transpose(a.value, [0, 3, 1, 2]));
  const toNhwc = (a: Activation): Value => (a.layout === "nchw" ? tape.transpose(a.value, [0, 2, 3, 1]) : a.value);
  const activation = (config: LayerConfig, name: string, value: Value): Value => {
    const fn = config.activation ?? "linear";
    if (fn === "linear") return value;
    if (fn === "relu") return tape.relu(value);
    throw new Error(`layer "${name}": activation "${String(fn)}" has no ONNX translation (relu and linear do)`);
  };

  for (const layer of model.layers) {
    const name = layer.name;
    const className = layer.getClassName();
    const config = layer.getConfig() as LayerConfig;
    const inbound = (layer.inboundNodes[0]?.inboundLayers ?? []).map((l) => {
      const a = outputs.get(l.name);
      if (a === undefined) throw new Error(`layer "${name}": its input "${l.name}" was not translated before it`);
      return a;
    });
    const [x] = inbound;
    const weights = new Map(layer.weights.map((w) => [w.originalName.slice(w.originalName.lastIndexOf("/") + 1), w]));
    const param = (suffix: string, kind: "parameter" | "state" = "parameter"): Value => {
      const w = weights.get(suffix);
      if (w === undefined) throw new Error(`layer "${name}" has no weight "${suffix}"`);
      return weight(w.originalName, w.shape as number[], kind);
    };
    const optionalParam = (suffix: string) => (weights.has(suffix) ? param(suffix) : undefined);

    let out: Activation;
    switch (className) {
      case "InputLayer":
        out = { value: input, layout: input.shape.length === 4 ? "nhwc" : "flat" };
        break;
      case "Dense": {
        if (x!.layout !== "flat") throw new Error(`layer "${name}": a Dense layer needs a flat input (add a Flatten layer)`);
        out = { value: activation(config, name, tape.dense(x!.value, param("kernel"), optionalParam("bias"))), layout: "flat" };
        break;
      }
      case "Conv2D": {
        checkChannelsLast(config, name);
        if (pair(config.dilationRate, name).some((d) => d !== 1)) throw new Error(`layer "${name}": dilated convolutions have no ONNX translation here`);
        const [kh, kw] = pair(config.kernelSize, name);
        const strides = pair(config.strides, name);
        const nchw = toNchw(x!);
        const [, , h, w] = nchw.shape as [null, number, number, number];
        let y = tape.conv(nchw, param("kernel"), { strides, pads: padding(config.padding, name, [h, w], [kh, kw], strides) });
        const bias = optionalParam("bias");
        if (bias !== undefined) y = tape.channelBias(y, bias);
        out = { value: activation(config, name, y), layout: "nchw" };
        break;
      }
      case "MaxPooling2D": {
        checkChannelsLast(config, name);
        const pool = pair(config.poolSize, name);
        const strides = config.strides == null ? pool : pair(config.strides, name);
        if (config.padding !== "valid") throw new Error(`layer "${name}": only "valid" max pooling has an ONNX translation here`);
        out = { value: tape.maxPool(toNchw(x!), pool, strides), layout: "nchw" };
        break;
      }
      case "GlobalAveragePooling2D":
        checkChannelsLast(config, name);
        out = { value: tape.globalAveragePool(toNchw(x!)), layout: "flat" };
        break;
      case "Flatten":
        // tfjs flattens NHWC data: the NHWC order of values is what the next Dense kernel expects.
        out = { value: tape.flatten(toNhwc(x!)), layout: "flat" };
        break;
      case "ReLU":
        if (config.maxValue != null) throw new Error(`layer "${name}": a capped ReLU has no ONNX translation here`);
        out = { value: tape.relu(x!.value), layout: x!.layout };
        break;
      case "Add": {
        const [a, b] = inbound as [Activation, Activation];
        if (inbound.length !== 2) throw new Error(`layer "${name}": Add of ${inbound.length} inputs has no ONNX translation here (2 has)`);
        const sameLayout = a.layout === b.layout;
        out = { value: tape.add(sameLayout ? a.value : toNchw(a), sameLayout ? b.value : toNchw(b)), layout: sameLayout ? a.layout : "nchw" };
        break;
      }
      case "BatchNormalization": {
        const axis = Number(config.axis);
        if (!(axis === -1 || axis === 3) || x!.value.shape.length !== 4) throw new Error(`layer "${name}": only batch norm over the channels of an image has an ONNX translation here`);
        if (config.center === false || config.scale === false) throw new Error(`layer "${name}": batch norm without gamma or beta has no ONNX translation here`);
        const epsilon = Number(config.epsilon);
        const nchw = toNchw(x!);
        const [gamma, beta] = [param("gamma"), param("beta")];
        const movingMean = param("moving_mean", "state");
        const movingVariance = param("moving_variance", "state");
        if (phase === "training") {
          const r = tape.batchNormTraining(nchw, gamma, beta, epsilon);
          updates.push({ movingMean: movingMean.name, movingVariance: movingVariance.name, momentum: Number(config.momentum), mean: r.mean, variance: r.variance });
          out = { value: r.y, layout: "nchw" };
        } else {
          const y = tape.graph.op("BatchNormalization", [nchw, gamma, beta, movingMean, movingVariance], { epsilon: { float: epsilon } }, nchw.shape, "bn_inference");
          out = { value: y, layout: "nchw" };
        }
        break;
      }
      default:
        throw new Error(`layer "${name}" (${className}) has no ONNX translation; the onnxruntime engine translates ` +
          "Dense, Conv2D, MaxPooling2D, GlobalAveragePooling2D, Flatten, ReLU, Add and BatchNormalization");
    }
    outputs.set(name, out);
  }

  const last = outputs.get(model.layers[model.layers.length - 1]!.name)!;
  if (last.layout !== "flat" || last.value.shape.length !== 2) throw new Error(`model "${model.name}" must end in [batch, classes] logits`);
  return { logits: last.value, batchNormUpdates: updates };
}

function checkChannelsLast(config: LayerConfig, name: string): void {
  if (config.dataFormat !== undefined && config.dataFormat !== "channelsLast") {
    throw new Error(`layer "${name}": only channelsLast data has an ONNX translation here`);
  }
}

function pair(value: unknown, name: string): [number, number] {
  const v = typeof value === "number" ? [value, value] : value;
  if (!Array.isArray(v) || v.length !== 2 || !v.every((d) => Number.isInteger(d) && d > 0)) {
    throw new Error(`layer "${name}": expected one or two positive integers, got ${JSON.stringify(value)}`);
  }
  return v as [number, number];
}

/** ONNX pads [top, left, bottom, right] for tfjs's "same" (TensorFlow's rule: any odd extra pad goes
 *  at the end) or "valid" padding. */
function padding(mode: unknown, name: string, [h, w]: readonly [number, number], [kh, kw]: readonly [number, number], [sh, sw]: readonly [number, number]): [number, number, number, number] {
  if (mode === "valid") return [0, 0, 0, 0];
  if (mode !== "same") throw new Error(`layer "${name}": padding "${String(mode)}" has no ONNX translation here`);
  const total = (size: number, k: number, s: number) => Math.max((Math.ceil(size / s) - 1) * s + k - size, 0);
  const th = total(h, kh, sh);
  const tw = total(w, kw, sw);
  return [Math.floor(th / 2), Math.floor(tw / 2), th - Math.floor(th / 2), tw - Math.floor(tw / 2)];
}

