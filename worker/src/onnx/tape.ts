/**
 * Reverse-mode differentiation at graph level: every differentiable operation appends its forward
 * ONNX nodes to the graph and records how to append its backward nodes; gradients() then walks the
 * records in reverse and appends the whole backward pass to the same graph. The result is one
 * ordinary ONNX graph (forward + backward) that any ONNX Runtime runs as inference: ONNX Runtime's
 * npm packages have no training API, and need none for this.
 *
 * Layout: 4-D activations are NCHW here (ONNX's convention); the model translation (from-layers.ts)
 * transposes to and from tfjs's NHWC where needed, and the tape differentiates through those
 * transposes like through anything else.
 *
 * Only what the models use is here; each rule's formula is in its comment. A value that no
 * parameter influences (the input batch, the labels) gets no gradient and costs nothing backward.
 */
import { DataType, GraphBuilder, int, ints, type Shape, type Value } from "@distributed-ps/common/onnx/graph-builder.ts";

type Backward = (dy: Value) => void;

export interface ConvOptions {
  /** [height, width] strides. */
  readonly strides: readonly [number, number];
  /** [top, left, bottom, right] zero padding, ONNX's order. */
  readonly pads: readonly [number, number, number, number];
}

export class Tape {
  readonly graph = new GraphBuilder();
  readonly #records: { readonly out: Value; readonly backward: Backward }[] = [];
  readonly #needsGradient = new Set<string>();
  readonly #gradients = new Map<string, Value>();
  readonly #constants = new Map<string, Value>();

  /** A graph input that gradients are taken with respect to (a model parameter). */
  parameter(name: string, shape: Shape): Value {
    const value = this.graph.input(name, shape);
    this.#needsGradient.add(value.name);
    return value;
  }

  /** A graph input without a gradient (the batch, labels, batch-norm statistics). */
  input(name: string, shape: Shape, type: DataType = DataType.FLOAT): Value {
    return this.graph.input(name, shape, type);
  }

  /** y = transpose(x, perm). Backward: dx = transpose(dy, perm⁻¹). */
  transpose(x: Value, perm: readonly number[]): Value {
    const y = this.graph.op("Transpose", [x], { perm: ints(perm) }, perm.map((p) => x.shape[p]!));
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return this.#record(y, [x], (dy) => this.#accumulate(x, this.graph.op("Transpose", [dy], { perm: ints(inverse) }, x.shape)));
  }

  /**
   * 2-D convolution, x [N, C, H, W] by the kernel k [KH, KW, C, O] (tfjs's layout, the parameter's
   * own: transposed to ONNX's [O, C, KH, KW] inside the graph, and its gradient made in k's layout
   * directly), no bias, no dilation.
   * Backward, per spatial axis with stride s and leading pad p (xpad: x zero-padded):
   *   dx: stride 1: a convolution of dy by the kernel flipped in both spatial axes with its channel
   *       axes swapped, padded by K-1-p; otherwise ConvTranspose(dy, w) with the same strides and
   *       pads (ONNX Runtime's ConvTranspose is slower than its Conv, so only strided layers use it).
   *   dk[i, j, c, o] = Σ_n,h,w xpad[n, c, h·s + i, w·s + j] · dy[n, o, h, w]: for each tap (i, j)
   *       one matrix product of the tap's (strided) window of xpad, [N·OH·OW, C], with dy as
   *       [N·OH·OW, O], both channels-last so that every window is a plain slice.
   */
  conv(x: Value, k: Value, { strides, pads }: ConvOptions): Value {
    const [, , h, wd] = x.shape as [null, number, number, number];
    const [kh, kw, c, o] = k.shape as [number, number, number, number];
    if (x.shape[1] !== c) throw new Error(`conv: input has ${x.shape[1]} channels, the kernel expects ${c}`);
    const [sh, sw] = strides;
    const [pt, pl, pb, pr] = pads;
    const oh = Math.floor((h + pt + pb - kh) / sh) + 1;
    const ow = Math.floor((wd + pl + pr - kw) / sw) + 1;
    const w = this.graph.op("Transpose", [k], { perm: ints([3, 2, 0, 1]) }, [o, c, kh, kw], "kernel_oihw");
    const y = this.graph.op("Conv", [x, w], { kernel_shape: ints([kh, kw]), strides: ints(strides), pads: ints(pads) }, [x.shape[0]!, o, oh, ow]);
    return this.#record(y, [x, k], (dy) => {
      if (this.#needsGradient.has(x.name)) {
        if (sh === 1 && sw === 1) {
          const flipped = this.graph.op("Slice", [k, this.#ints([-1, -1]), this.#ints([-(kh + 1), -(kw + 1)]), this.#ints([0, 1]), this.#ints([-1, -1])], {}, k.shape);
          const swapped = this.graph.op("Transpose", [flipped], { perm: ints([2, 3, 0, 1]) }, [c, o, kh, kw]);
          this.#accumulate(x, this.graph.op("Conv", [dy, swapped],
            { kernel_shape: ints([kh, kw]), pads: ints([kh - 1 - pt, kw - 1 - pl, kh - 1 - pb, kw - 1 - pr]) }, x.shape, "conv_dx"));
        } else {
          const outputPadding = [h - ((oh - 1) * sh + kh - pt - pb), wd - ((ow - 1) * sw + kw - pl - pr)];
          this.#accumulate(x, this.graph.op("ConvTranspose", [dy, w],
            { kernel_shape: ints([kh, kw]), strides: ints(strides), pads: ints(pads), output_padding: ints(outputPadding) }, x.shape, "conv_dx"));
        }
      }
      if (this.#needsGradient.has(k.name)) {
        let xh = this.graph.op("Transpose", [x], { perm: ints([0, 2, 3, 1]) }, [null, h, wd, c]);
        if (pt + pl + pb + pr > 0) {
          xh = this.graph.op("Pad", [xh, this.#ints([0, pt, pl, 0, 0, pb, pr, 0])], {}, [null, h + pt + pb, wd + pl + pr, c]);
        }
        const dyh = this.graph.op("Transpose", [dy], { perm: ints([0, 2, 3, 1]) }, [null, oh, ow, o]);
        const dyRows = this.graph.op("Reshape", [dyh, this.#ints([-1, o])], {}, [null, o]);
        const taps: Value[] = [];
        for (let i = 0; i < kh; i++) {
          for (let j = 0; j < kw; j++) {
            const window = this.graph.op("Slice", [xh, this.#ints([i, j]), this.#ints([i + sh * (oh - 1) + 1, j + sw * (ow - 1) + 1]), this.#ints([1, 2]), this.#ints([sh, sw])], {}, [null, oh, ow, c]);
            const rows = this.graph.op("Reshape", [window, this.#ints([-1, c])], {}, [null, c]);
            const tap = this.graph.op("Gemm", [rows, dyRows], { transA: int(1) }, [c, o], "conv_dw");
            taps.push(this.graph.op("Unsqueeze", [tap, this.#ints([0])], {}, [1, c, o]));
          }
        }
        const stacked = taps.length === 1 ? taps[0]! : this.graph.op("Concat", taps, { axis: int(0) }, [kh * kw, c, o]);
        this.#accumulate(k, this.graph.op("Reshape", [stacked, this.#ints([kh, kw, c, o])], {}, k.shape, "conv_dk"));
      }
    });
  }

  /**
   * y = x·k + b, x [N, in], k [in, out], b [out].
   * Backward: dx = dy·kᵀ, dk = xᵀ·dy, db = Σ_n dy.
   */
  dense(x: Value, k: Value, b: Value | undefined): Value {
    const [inputs, units] = k.shape as [number, number];
    if (x.shape[1] !== inputs) throw new Error(`dense: input has ${x.shape[1]} features, the kernel expects ${inputs}`);
    const y = b === undefined
      ? this.graph.op("MatMul", [x, k], {}, [x.shape[0]!, units])
      : this.graph.op("Gemm", [x, k, b], {}, [x.shape[0]!, units]);
    return this.#record(y, b === undefined ? [x, k] : [x, k, b], (dy) => {
      if (this.#needsGradient.has(x.name)) this.#accumulate(x, this.graph.op("Gemm", [dy, k], { transB: int(1) }, x.shape, "dense_dx"));
      if (this.#needsGradient.has(k.name)) this.#accumulate(k, this.graph.op("Gemm", [x, dy], { transA: int(1) }, k.shape, "dense_dk"));
      if (b !== undefined && this.#needsGradient.has(b.name)) {
        this.#accumulate(b, this.graph.op("ReduceSum", [dy, this.#ints([0])], { keepdims: int(0) }, b.shape, "dense_db"));
      }
    });
  }

  /** y + b per channel, y [N, C, H, W], b [C]. Backward: dy passes to y, db = Σ over N, H, W of dy. */
  channelBias(y: Value, b: Value): Value {
    const c = y.shape[1] as number;
    const out = this.graph.op("Add", [y, this.graph.op("Reshape", [b, this.#ints([c, 1, 1])], {}, [c, 1, 1])], {}, y.shape, "bias_add");
    return this.#record(out, [y, b], (dy) => {
      this.#accumulate(y, dy);
      this.#accumulate(b, this.graph.op("ReduceSum", [dy, this.#ints([0, 2, 3])], { keepdims: int(0) }, b.shape, "bias_db"));
    });
  }

  /** y = max(x, 0). Backward: dx = dy where y > 0, else 0 (the gradient at 0 is 0, as in tfjs). */
  relu(x: Value): Value {
    const y = this.graph.op("Relu", [x], {}, x.shape);
    return this.#record(y, [x], (dy) => {
      const positive = this.graph.op("Greater", [y, this.#scalar(0)], {}, x.shape, "relu_mask");
      this.#accumulate(x, this.graph.op("Where", [positive, dy, this.#scalar(0)], {}, x.shape, "relu_dx"));
    });
  }

  /** y = a + b (same shapes). Backward: da = db = dy. */
  add(a: Value, b: Value): Value {
    if (a.shape.join() !== b.shape.join()) throw new Error(`add: shapes [${a.shape.join(", ")}] and [${b.shape.join(", ")}] differ`);
    const y = this.graph.op("Add", [a, b], {}, a.shape);
    return this.#record(y, [a, b], (dy) => {
      this.#accumulate(a, dy);
      this.#accumulate(b, dy);
    });
  }

  /**
   * Max pooling of x [N, C, H, W] with a k×k window, stride s, no padding.
   * Backward: dy goes to the position each maximum came from: MaxPool's second output gives it as an
   * index into x flattened, and ScatterElements puts dy there (into zeros of x's size).
   */
  maxPool(x: Value, [kh, kw]: readonly [number, number], [sh, sw]: readonly [number, number]): Value {
    const [n, c, h, w] = x.shape as [null, number, number, number];
    const shape = [n, c, Math.floor((h - kh) / sh) + 1, Math.floor((w - kw) / sw) + 1];
    const [y, indices] = this.graph.opN("MaxPool", [x], { kernel_shape: ints([kh, kw]), strides: ints([sh, sw]) }, [shape, shape]);
    return this.#record(y!, [x], (dy) => {
      const xShape = this.graph.op("Shape", [x], {}, [4]);
      const zeros = this.graph.op("ConstantOfShape", [xShape], {}, x.shape);
      const flat = (v: Value) => this.graph.op("Reshape", [v, this.#ints([-1])], {}, [null]);
      const scattered = this.graph.op("ScatterElements", [flat(zeros), flat(indices!), flat(dy)], { axis: int(0) }, [null], "maxpool_dx");
      this.#accumulate(x, this.graph.op("Reshape", [scattered, xShape], {}, x.shape));
    });
  }

  /** Mean over the spatial axes: x [N, C, H, W] -> [N, C]. Backward: dx = dy / (H·W) at every position. */
  globalAveragePool(x: Value): Value {
    const [n, c, h, w] = x.shape as [null, number, number, number];
    const pooled = this.graph.op("GlobalAveragePool", [x], {}, [n, c, 1, 1]);
    const y = this.graph.op("Flatten", [pooled], { axis: int(1) }, [n, c]);
    return this.#record(y, [x], (dy) => {
      const d4 = this.graph.op("Reshape", [dy, this.#ints([0, c, 1, 1])], {}, [n, c, 1, 1]);
      const scaled = this.graph.op("Mul", [d4, this.#scalar(1 / (h * w))], {}, [n, c, 1, 1]);
      this.#accumulate(x, this.graph.op("Expand", [scaled, this.graph.op("Shape", [x], {}, [4])], {}, x.shape, "gap_dx"));
    });
  }

  /** [N, ...] -> [N, product of the rest]. Backward: reshape dy back to x's shape. */
  flatten(x: Value): Value {
    const size = x.shape.slice(1).reduce<number>((a, d) => a * d!, 1);
    const y = this.graph.op("Flatten", [x], { axis: int(1) }, [x.shape[0]!, size]);
    return this.#record(y, [x], (dy) => {
      this.#accumulate(x, this.graph.op("Reshape", [dy, this.graph.op("Shape", [x], {}, [x.shape.length])], {}, x.shape, "flatten_dx"));
    });
  }

  /**
   * Batch normalisation in training mode over x [N, C, H, W], per channel, with the batch's own
   * statistics (biased variance, as tfjs and PyTorch normalise with):
   *   x̂ = (x - μ) / √(σ² + ε),  y = γ·x̂ + β.
   * Returns y and the batch's μ and σ² ([C] each, no gradient) for the running statistics.
   * Backward (μ and σ² depend on x; M = N·H·W values per channel):
   *   dβ = Σ dy,  dγ = Σ dy·x̂,  dx = (γ / √(σ² + ε)) · (dy - mean(dy) - x̂·mean(dy·x̂)).
   */
  batchNormTraining(x: Value, gamma: Value, beta: Value, epsilon: number): { y: Value; mean: Value; variance: Value } {
    const [n, c, h, w] = x.shape as [null, number, number, number];
    const perChannel = [1, c, 1, 1];
    const axes = { axes: ints([0, 2, 3]) };
    const mean = this.graph.op("ReduceMean", [x], { ...axes, keepdims: int(1) }, perChannel, "bn_mean");
    const centred = this.graph.op("Sub", [x, mean], {}, x.shape);
    const variance = this.graph.op("ReduceMean", [this.graph.op("Mul", [centred, centred], {}, x.shape)], { ...axes, keepdims: int(1) }, perChannel, "bn_var");
    const invStd = this.graph.op("Reciprocal", [this.graph.op("Sqrt", [this.graph.op("Add", [variance, this.#scalar(epsilon)], {}, perChannel)], {}, perChannel)], {}, perChannel, "bn_inv_std");
    const xHat = this.graph.op("Mul", [centred, invStd], {}, x.shape, "bn_xhat");
    const gamma4 = this.graph.op("Reshape", [gamma, this.#ints(perChannel)], {}, perChannel);
    const beta4 = this.graph.op("Reshape", [beta, this.#ints(perChannel)], {}, perChannel);
    const y = this.graph.op("Add", [this.graph.op("Mul", [xHat, gamma4], {}, x.shape), beta4], {}, x.shape, "bn_y");
    const flat = (v: Value) => this.graph.op("Reshape", [v, this.#ints([c])], {}, [c]);
    this.#record(y, [x, gamma, beta], (dy) => {
      const sum = (v: Value, hint: string) => this.graph.op("ReduceSum", [v, this.#ints([0, 2, 3])], { keepdims: int(0) }, [c], hint);
      const dyXHat = this.graph.op("Mul", [dy, xHat], {}, x.shape);
      this.#accumulate(beta, sum(dy, "bn_dbeta"));
      this.#accumulate(gamma, sum(dyXHat, "bn_dgamma"));
      if (!this.#needsGradient.has(x.name)) return;
      const meanOf = (v: Value) => this.graph.op("ReduceMean", [v], { ...axes, keepdims: int(1) }, perChannel);
      const centredDy = this.graph.op("Sub", [dy, meanOf(dy)], {}, x.shape);
      const projected = this.graph.op("Sub", [centredDy, this.graph.op("Mul", [xHat, meanOf(dyXHat)], {}, x.shape)], {}, x.shape);
      const scale = this.graph.op("Mul", [gamma4, invStd], {}, perChannel);
      this.#accumulate(x, this.graph.op("Mul", [projected, scale], {}, [n, c, h, w], "bn_dx"));
    });
    return { y, mean: flat(mean), variance: flat(variance) };
  }

  /**
   * Mean softmax cross-entropy of logits [N, K] against integer labels [N] (INT32): a scalar.
   * Backward: dlogits = (softmax(logits) - onehot(labels)) / N · dloss.
   */
  softmaxCrossEntropy(logits: Value, labels: Value): Value {
    const [n, classes] = logits.shape as [null, number];
    const logProbabilities = this.graph.op("LogSoftmax", [logits], { axis: int(1) }, logits.shape);
    const labels64 = this.graph.op("Cast", [labels], { to: int(DataType.INT64) }, [n]);
    const column = this.graph.op("Unsqueeze", [labels64, this.#ints([1])], {}, [n, 1]);
    const picked = this.graph.op("GatherElements", [logProbabilities, column], { axis: int(1) }, [n, 1]);
    const loss = this.graph.op("Neg", [this.graph.op("ReduceMean", [picked], { axes: ints([0, 1]), keepdims: int(0) }, [])], {}, [], "loss");
    return this.#record(loss, [logits], (dLoss) => {
      const oneHot = this.graph.op("OneHot", [labels64, this.#ints([classes]), this.graph.constant("one_hot_values", new Float32Array([0, 1]), [2])], { axis: int(-1) }, logits.shape);
      const count = this.graph.op("Cast", [this.graph.op("Gather", [this.graph.op("Shape", [logits], {}, [2]), this.#ints([0])], { axis: int(0) }, [1])], { to: int(DataType.FLOAT) }, [1]);
      const error = this.graph.op("Sub", [this.graph.op("Exp", [logProbabilities], {}, logits.shape), oneHot], {}, logits.shape);
      const scale = this.graph.op("Div", [dLoss, count], {}, [1]);
      this.#accumulate(logits, this.graph.op("Mul", [error, scale], {}, logits.shape, "softmax_ce_dlogits"));
    });
  }

  /** How many rows of logits [N, K] have their largest value (the first, on ties) at the label. */
  correctCount(logits: Value, labels: Value): Value {
    const predicted = this.graph.op("ArgMax", [logits], { axis: int(1), keepdims: int(0) }, [logits.shape[0]!]);
    const labels64 = this.graph.op("Cast", [labels], { to: int(DataType.INT64) }, [logits.shape[0]!]);
    const hits = this.graph.op("Cast", [this.graph.op("Equal", [predicted, labels64], {}, [logits.shape[0]!])], { to: int(DataType.FLOAT) }, [logits.shape[0]!]);
    return this.graph.op("ReduceSum", [hits, this.#ints([0])], { keepdims: int(0) }, [], "correct");
  }

  /** Appends the backward pass of `loss` (a scalar) and returns d loss / d p for each of `wrt`. */
  gradients(loss: Value, wrt: readonly Value[]): Value[] {
    this.#gradients.clear();
    this.#gradients.set(loss.name, this.graph.constant("dloss", new Float32Array([1]), [1]));
    for (let i = this.#records.length - 1; i >= 0; i--) {
      const { out, backward } = this.#records[i]!;
      const dy = this.#gradients.get(out.name);
      if (dy !== undefined) backward(dy);
    }
    return wrt.map((p) => {
      const g = this.#gradients.get(p.name);
      if (g === undefined) throw new Error(`the loss does not depend on "${p.name}"`);
      return g;
    });
  }

  /** Records `y`'s backward rule if any of `inputs` needs a gradient; returns y. */
  #record(y: Value, inputs: readonly Value[], backward: Backward): Value {
    if (inputs.some((v) => this.#needsGradient.has(v.name))) {
      this.#needsGradient.add(y.name);
      this.#records.push({ out: y, backward });
    }
    return y;
  }

  #accumulate(x: Value, dx: Value): void {
    if (!this.#needsGradient.has(x.name)) return;
    const previous = this.#gradients.get(x.name);
    this.#gradients.set(x.name, previous === undefined ? dx : this.graph.op("Add", [previous, dx], {}, x.shape, "grad_sum"));
  }

  /** A float scalar constant, one per value per graph. */
  #scalar(value: number): Value {
    return this.#cached(`f:${value}`, () => this.graph.constant("scalar", new Float32Array([value]), []));
  }

  /** An INT64 vector constant (axes, shapes, indices), one per value per graph. */
  #ints(values: readonly number[]): Value {
    return this.#cached(`i:${values.join()}`, () => this.graph.constant("ints", BigInt64Array.from(values.map(BigInt)), [values.length]));
  }

  #cached(key: string, make: () => Value): Value {
    let value = this.#constants.get(key);
    if (value === undefined) this.#constants.set(key, (value = make()));
    return value;
  }
}

