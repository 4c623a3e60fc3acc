import t from "tap";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../src/model/backend.ts";
import { MODEL_DEFAULTS } from "../src/model/defaults.ts";
import { createModel, MODEL_BUILDERS } from "../src/model/models.ts";
import { Trainer } from "../src/model/trainer.ts";
import { Random } from "../src/data/random.ts";

await initBackend("wasm");

/** Byte-equality of two tensor lists (t.same on 11M floats is slow). */
const identical = (a: { name: string; data: Float32Array }[], b: { name: string; data: Float32Array }[]) =>
  a.length === b.length && a.every((p, i) => p.name === b[i]!.name && Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength).equals(Buffer.from(b[i]!.data.buffer, b[i]!.data.byteOffset, b[i]!.data.byteLength)));
const count = (specs: { shape: readonly number[] }[]) => specs.reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
function batch(n: number, features: number, classes: number, seed: number) {
  const r = new Random(seed);
  return { x: Float32Array.from({ length: n * features }, () => r.normal()), y: Int32Array.from({ length: n }, () => r.nextInt(classes)), count: n };
}

t.test("resnet18: 11,173,962 trainable parameters (10 classes), stable names, BN statistics kept apart", async (t) => {
  const a = new Trainer(createModel("resnet18", { inputShape: [32, 32, 3], classes: 10, seed: 1 }));
  const specs = a.parameterSpecs();
  t.equal(count(specs), 11_173_962, "the usual ResNet-18 (CIFAR) parameter count");
  t.equal(specs.length, 62, "20 convs + 20 BN (gamma, beta) + fc kernel and bias");
  t.same(specs.slice(0, 3).map((s) => s.name), ["stem_conv/kernel", "stem_bn/gamma", "stem_bn/beta"], "explicit names, stem first");
  t.same(specs.at(-1), { name: "fc/bias", shape: [10] }, "fc last");
  t.ok(specs.some((s) => s.name === "stage2_block1_shortcut_conv/kernel" && s.shape.join() === "1,1,64,128"), "projection shortcut where the shape changes");
  t.notOk(specs.some((s) => s.name === "stage1_block1_shortcut_conv/kernel"), "identity shortcut where it does not");
  const state = a.nonTrainableState();
  t.equal(state.length, 40, "moving mean and variance of 20 batch norms");
  t.same(state.slice(0, 2).map((s) => s.name), ["stem_bn/moving_mean", "stem_bn/moving_variance"]);
  t.notOk(specs.some((s) => /moving/.test(s.name)), "parameters() excludes the moving statistics");

  // A second model in the same process: tfjs would uniquify variable names; ours stay.
  const b = new Trainer(createModel("resnet18", { inputShape: [32, 32, 3], classes: 100, seed: 1 }));
  t.same(b.parameterSpecs().map((s) => s.name), specs.map((s) => s.name), "same names for a second model");
  t.equal(count(b.parameterSpecs()), 11_220_132, "100 classes: 11,220,132");
  t.ok(identical(b.parameters().slice(0, 60), a.parameters().slice(0, 60)), "seeded: the same initial weights for the same seed (all but fc)");
  b.dispose();
  a.dispose();
});

t.test("batch norm: training updates the worker-local statistics, evaluation uses them and changes nothing", async (t) => {
  // A small input keeps this fast; the architecture is the same.
  const trainer = new Trainer(createModel("resnet18", { inputShape: [8, 8, 3], classes: 10, seed: 2 }));
  const data = batch(4, 8 * 8 * 3, 10, 5);
  const initial = trainer.nonTrainableState();
  t.ok(initial[0]!.data.every((v) => v === 0) && initial[1]!.data.every((v) => v === 1), "moving mean 0, variance 1 at start");
  const params = trainer.parameters();

  const before = trainer.evaluate(data.x, data.y, data.count);
  t.ok(identical(trainer.nonTrainableState(), initial), "evaluate() does not touch the statistics");
  const g = trainer.gradients(data.x, data.y, data.count);
  t.equal(g.gradients.length, params.length, "a gradient for every trainable weight and nothing else");
  const after = trainer.nonTrainableState();
  t.notSame(after[0]!.data, initial[0]!.data, "gradients() (training mode) moved the moving mean");
  t.ok(identical(trainer.parameters(), params), "but not the parameters");
  const evaluated = trainer.evaluate(data.x, data.y, data.count);
  t.not(evaluated.loss, before.loss, "inference mode normalises with the moving statistics (they changed, so did the loss)");

  // Training-mode output does not depend on the moving statistics; inference-mode output does.
  trainer.setNonTrainableState(initial);
  t.ok(identical(trainer.nonTrainableState(), initial), "setNonTrainableState() restores them by name");
  t.equal(trainer.evaluate(data.x, data.y, data.count).loss, before.loss, "and evaluation is back where it was");
  t.equal(trainer.gradients(data.x, data.y, data.count).loss, g.loss, "training-mode loss uses batch statistics only");
  t.throws(() => trainer.setNonTrainableState([{ name: "nope", shape: [1], data: new Float32Array(1) }]), /unknown tensor "nope"/);
  trainer.dispose();
});

t.test("cnn: names and shapes for 28x28x1 and 32x32x3, one gradient step lowers the loss, no tensor leak", async (t) => {
  const mnist = new Trainer(createModel("cnn", { inputShape: [28, 28, 1], classes: 10, seed: 1 }));
  t.same(mnist.parameterSpecs().map((s) => `${s.name}:${s.shape.join("x")}`), [
    "conv1/kernel:3x3x1x32", "conv1/bias:32", "conv2/kernel:3x3x32x32", "conv2/bias:32",
    "conv3/kernel:3x3x32x64", "conv3/bias:64", "conv4/kernel:3x3x64x64", "conv4/bias:64",
    "dense1/kernel:3136x128", "dense1/bias:128", "dense2/kernel:128x10", "dense2/bias:10",
  ], "explicit layer names");
  t.same(mnist.nonTrainableState(), [], "no batch norm, no state");
  const data = batch(16, 784, 10, 3);
  const step = () => {
    const { gradients, loss } = mnist.gradients(data.x, data.y, data.count);
    mnist.setParameters(mnist.parameters().map((p, i) => ({ ...p, data: p.data.map((v, j) => v - 0.05 * gradients[i]!.data[j]!) })));
    return loss;
  };
  const first = step();
  const before = tf.memory().numTensors;
  let last = first;
  for (let i = 0; i < 4; i++) last = step();
  t.ok(last < first, `SGD on one batch lowers its loss (${first.toFixed(3)} -> ${last.toFixed(3)})`);
  t.equal(tf.memory().numTensors, before, "no tensor leaked over 4 steps");
  mnist.dispose();

  const cifar = new Trainer(createModel("cnn", { inputShape: [32, 32, 3], classes: 100, seed: 1 }));
  t.same(cifar.parameterSpecs().find((s) => s.name === "dense1/kernel")?.shape, [4096, 128], "32x32 input: 8*8*64 features into dense1");
  cifar.dispose();
  t.throws(() => createModel("cnn", { inputShape: [32], classes: 10, seed: 1 }), /cnn needs image input/, "a flat input is refused clearly");
  t.throws(() => createModel("resnet18", { inputShape: [32], classes: 10, seed: 1 }), /resnet18 needs image input/);
});

t.test("every model has defaults", async (t) => {
  for (const name of Object.keys(MODEL_BUILDERS)) {
    const d = MODEL_DEFAULTS[name as keyof typeof MODEL_BUILDERS];
    t.ok(d.batchSize >= 1 && d.learningRate > 0, `${name}: batch ${d.batchSize}, learning rate ${d.learningRate}`);
  }
});
