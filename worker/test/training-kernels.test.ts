import t from "tap";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-layers"; // registers the gradients of every op (as the models' import does)
import { initBackend } from "../src/model/backend.ts";
import { Random } from "../src/data/random.ts";

await initBackend("wasm");
t.equal(tf.getBackend(), "wasm", "these tests exercise the wasm kernels");

/** Direct summation, in float64, of the gradients of L = sum(conv2d(x, w) * weights). */
function reference(xs: number[], ws: number[], stride: number, pad: "same" | "valid", x: Float32Array, w: Float32Array, weights: Float32Array) {
  const [n, h, wd, ci] = xs as [number, number, number, number];
  const [kh, kw, , co] = ws as [number, number, number, number];
  const oh = pad === "same" ? Math.ceil(h / stride) : Math.ceil((h - kh + 1) / stride);
  const ow = pad === "same" ? Math.ceil(wd / stride) : Math.ceil((wd - kw + 1) / stride);
  const top = pad === "same" ? Math.floor(Math.max((oh - 1) * stride + kh - h, 0) / 2) : 0;
  const left = pad === "same" ? Math.floor(Math.max((ow - 1) * stride + kw - wd, 0) / 2) : 0;
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  for (let b = 0; b < n; b++) for (let i = 0; i < oh; i++) for (let j = 0; j < ow; j++) for (let o = 0; o < co; o++) {
    const g = weights[((b * oh + i) * ow + j) * co + o]!;
    for (let p = 0; p < kh; p++) for (let q = 0; q < kw; q++) {
      const r = i * stride + p - top;
      const c = j * stride + q - left;
      if (r < 0 || r >= h || c < 0 || c >= wd) continue;
      for (let k = 0; k < ci; k++) {
        const xi = ((b * h + r) * wd + c) * ci + k;
        const wi = ((p * kw + q) * ci + k) * co + o;
        dx[xi]! += g * w[wi]!;
        dw[wi]! += g * x[xi]!;
      }
    }
  }
  return { dx, dw, outShape: [n, oh, ow, co] };
}

const cases: [number[], number[], number, "same" | "valid"][] = [
  [[2, 7, 7, 3], [3, 3, 3, 4], 1, "same"],
  [[2, 8, 8, 3], [3, 3, 3, 4], 2, "same"],
  [[2, 7, 9, 3], [3, 3, 3, 4], 2, "same"],
  [[2, 9, 9, 3], [2, 2, 3, 4], 2, "valid"],
  [[2, 8, 8, 3], [1, 1, 3, 5], 2, "same"],
  [[1, 6, 5, 2], [3, 3, 2, 2], 1, "valid"],
];

t.test("Conv2DBackpropFilter and Conv2DBackpropInput on wasm match direct summation", async (t) => {
  const random = new Random(3);
  for (const [xs, ws, stride, pad] of cases) {
    const x = Float32Array.from({ length: xs.reduce((a, b) => a * b) }, () => random.normal());
    const w = Float32Array.from({ length: ws.reduce((a, b) => a * b) }, () => random.normal());
    const ref0 = reference(xs, ws, stride, pad, x, w, new Float32Array(0));
    const weights = Float32Array.from({ length: ref0.outShape.reduce((a, b) => a * b) }, () => random.normal());
    const ref = reference(xs, ws, stride, pad, x, w, weights);
    const [gx, gw] = tf.tidy(() => {
      const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad), tf.tensor(weights, ref.outShape))) as tf.Scalar;
      return tf.grads(f)([tf.tensor(x, xs), tf.tensor(w, ws)]).map((g) => g.dataSync() as Float32Array);
    }) as [Float32Array, Float32Array];
    const err = (a: Float32Array, b: Float64Array) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i]!)));
    const label = `x [${xs}] w [${ws}] stride ${stride} ${pad}`;
    t.ok(err(gx, ref.dx) < 1e-4, `${label}: input gradient (max error ${err(gx, ref.dx).toExponential(1)})`);
    t.ok(err(gw, ref.dw) < 1e-4, `${label}: filter gradient (max error ${err(gw, ref.dw).toExponential(1)})`);
  }
});

t.test("the batch-norm gradient (broadcast instead of tile) matches batch norm written with primitive ops", async (t) => {
  const random = new Random(4);
  const x = tf.tensor(Float32Array.from({ length: 4 * 3 * 3 * 5 }, () => random.normal() * 2 + 1), [4, 3, 3, 5]);
  const gamma = tf.tensor(Float32Array.from({ length: 5 }, () => 1 + random.normal() / 4));
  const beta = tf.tensor(Float32Array.from({ length: 5 }, () => random.normal()));
  const weights = tf.tensor(Float32Array.from({ length: x.size }, () => random.normal()), x.shape);
  const viaKernel = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
    const { mean, variance } = tf.moments(a, [0, 1, 2]);
    return tf.sum(tf.mul(tf.batchNorm(a, mean, variance, b, g, 1e-5), weights)) as tf.Scalar;
  };
  const byHand = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
    const { mean, variance } = tf.moments(a, [0, 1, 2]);
    const normed = tf.div(tf.sub(a, mean), tf.sqrt(tf.add(variance, 1e-5)));
    return tf.sum(tf.mul(tf.add(tf.mul(normed, g), b), weights)) as tf.Scalar;
  };
  const got = tf.grads(viaKernel)([x, gamma, beta]).map((g) => g.dataSync());
  const want = tf.grads(byHand)([x, gamma, beta]).map((g) => g.dataSync());
  for (const [i, name] of ["x", "gamma", "beta"].entries()) {
    const err = Math.max(...Array.from(got[i]!, (v, j) => Math.abs(v - want[i]![j]!)));
    t.ok(err < 1e-4, `d/d${name} agrees (max error ${err.toExponential(1)})`);
  }
});

t.test("the kernels free their intermediates", async (t) => {
  const x = tf.randomNormal([2, 8, 8, 3]);
  const w = tf.randomNormal([3, 3, 3, 4]);
  const step = () => tf.tidy(() => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, "same")) as tf.Scalar)([x, w]).forEach((g) => g.dataSync()));
  step();
  const before = tf.memory().numTensors;
  for (let i = 0; i < 5; i++) step();
  t.equal(tf.memory().numTensors, before, "no tensor left behind");
});
