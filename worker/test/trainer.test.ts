import t from "tap";
import * as tf from "@tensorflow/tfjs-core";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { epochBatches, gather, sliceForPart } from "../src/data/partition.ts";
import { Random } from "../src/data/random.ts";
import { makeSyntheticDataset } from "../src/data/synthetic.ts";
import { initBackend } from "../src/model/backend.ts";
import { createModel, type ModelName } from "../src/model/models.ts";
import { Trainer } from "../src/model/trainer.ts";

const backend = await initBackend("wasm");

const makeTrainer = (name: ModelName, features = 32, classes = 10, seed = 1) =>
  new Trainer(createModel(name, { inputShape: [features], classes, seed }));

/** A batch of `count` random examples with features in [-1, 1) and labels in [0, classes). */
function randomBatch(count: number, features: number, classes: number, seed: number) {
  const random = new Random(seed);
  const x = Float32Array.from({ length: count * features }, () => 2 * random.nextFloat() - 1);
  const y = Int32Array.from({ length: count }, () => random.nextInt(classes));
  return { x, y, count };
}

const same = (a: readonly NamedTensor[], b: readonly NamedTensor[]) =>
  a.length === b.length &&
  a.every((p, i) => p.name === b[i]!.name && p.data.every((v, j) => v === b[i]!.data[j]));

t.test("parameters() / setParameters() round trip", async (t) => {
  const trainer = makeTrainer("mlp");
  const original = trainer.parameters();
  const shifted = original.map((p) => ({ ...p, data: p.data.map((v, i) => v + 0.001 * (i % 7) + 0.5) }));
  trainer.setParameters(shifted);
  t.ok(same(trainer.parameters(), shifted), "the weights read back are exactly the ones set");
  trainer.setParameters([...original].reverse());
  t.ok(same(trainer.parameters(), original), "order of the given tensors does not matter");

  const copy = trainer.parameters();
  copy[0]!.data.fill(123);
  t.ok(same(trainer.parameters(), original), "parameters() returns copies: mutating them leaves the model alone");
  trainer.dispose();
});

t.test("setParameters() rejects bad input and leaves the model unchanged", async (t) => {
  const trainer = makeTrainer("mlp");
  const good = trainer.parameters();
  const [kernel, ...rest] = good;
  t.throws(() => trainer.setParameters([...good, { name: "dense9/kernel", shape: [1], data: new Float32Array(1) }]),
    /unknown tensor "dense9\/kernel"/, "an unknown name is named in the error");
  t.throws(() => trainer.setParameters(rest), /missing tensor\(s\) "dense1\/kernel"/, "a missing weight is named");
  t.throws(() => trainer.setParameters([{ ...kernel!, shape: [64, 32] }, ...rest]),
    /"dense1\/kernel" has shape \[64, 32\], the model expects \[32, 64\]/, "a wrong shape is named with both shapes");
  t.throws(() => trainer.setParameters([{ ...kernel!, data: new Float32Array(5) }, ...rest]),
    /"dense1\/kernel" has 5 values/, "data length disagreeing with the shape is rejected");
  t.throws(() => trainer.setParameters([...good, good[1]!]), /"dense1\/bias" given twice/, "a duplicate is rejected");

  const zeros = good.map((p) => ({ ...p, data: new Float32Array(p.data.length) }));
  t.throws(() => trainer.setParameters([...zeros.slice(0, 5), { ...zeros[5]!, shape: [11] }]), /dense3\/bias/,
    "a bad last tensor is rejected...");
  t.ok(same(trainer.parameters(), good), "...before any earlier tensor was assigned");
  trainer.dispose();
});

t.test("gradients of the linear model match the hand-computed softmax-regression gradient", async (t) => {
  const features = 5;
  const classes = 4;
  const trainer = makeTrainer("linear", features, classes, 3);
  // Non-zero bias so that its contribution is checked too.
  const [w0, b0] = trainer.parameters();
  const bias = Float32Array.from([0.1, -0.2, 0.3, 0]);
  trainer.setParameters([w0!, { ...b0!, data: bias }]);
  const kernel = w0!.data; // [features, classes] row-major
  const { x, y, count } = randomBatch(6, features, classes, 8);

  // By hand, in float64: p = softmax(x W + b); dL/dW = x^T (p - onehot) / n; dL/db = mean(p - onehot).
  const expectedW = new Float64Array(features * classes);
  const expectedB = new Float64Array(classes);
  let expectedLoss = 0;
  let expectedCorrect = 0;
  for (let i = 0; i < count; i++) {
    const logits = Array.from({ length: classes }, (_, c) => {
      let z = bias[c]!;
      for (let f = 0; f < features; f++) z += x[i * features + f]! * kernel[f * classes + c]!;
      return z;
    });
    const top = Math.max(...logits);
    const exps = logits.map((z) => Math.exp(z - top));
    const total = exps.reduce((s, e) => s + e, 0);
    const p = exps.map((e) => e / total);
    expectedLoss -= Math.log(p[y[i]!]!) / count;
    if (logits.indexOf(top) === y[i]) expectedCorrect++;
    for (let c = 0; c < classes; c++) {
      const delta = (p[c]! - (c === y[i] ? 1 : 0)) / count;
      expectedB[c]! += delta;
      for (let f = 0; f < features; f++) expectedW[f * classes + c]! += x[i * features + f]! * delta;
    }
  }

  const result = trainer.gradients(x, y, count);
  t.same(result.gradients.map((g) => [g.name, g.shape]), [["dense1/kernel", [features, classes]], ["dense1/bias", [classes]]],
    "gradients have the parameters' names and shapes, in the same order");
  const maxError = (got: Float32Array, want: Float64Array) => Math.max(...got.map((v, i) => Math.abs(v - want[i]!)));
  t.ok(maxError(result.gradients[0]!.data, expectedW) < 1e-5, `kernel gradient matches (max error ${maxError(result.gradients[0]!.data, expectedW)})`);
  t.ok(maxError(result.gradients[1]!.data, expectedB) < 1e-5, `bias gradient matches (max error ${maxError(result.gradients[1]!.data, expectedB)})`);
  t.ok(Math.abs(result.loss - expectedLoss) < 1e-5, `loss ${result.loss} matches ${expectedLoss}`);
  t.equal(result.correct, expectedCorrect, "correct count matches");
  trainer.dispose();
});

t.test("MLP gradients agree with central finite differences", async (t) => {
  const trainer = makeTrainer("mlp", 6, 3, 4);
  const batch = randomBatch(8, 6, 3, 9);
  const base = trainer.parameters();
  const { gradients, loss } = trainer.gradients(batch.x, batch.y, batch.count);
  const lossWith = (tensor: number, element: number, delta: number) => {
    const moved = base.map((p, i) => (i === tensor ? { ...p, data: p.data.map((v, j) => (j === element ? v + delta : v)) } : p));
    trainer.setParameters(moved);
    return trainer.gradients(batch.x, batch.y, batch.count).loss;
  };
  // Float32 loss: much smaller steps drown in rounding noise (~1e-7 / epsilon).
  const epsilon = 1e-3;
  const tolerance = (analytic: number) => 2e-4 + 0.02 * Math.abs(analytic);
  for (const [tensor, g] of gradients.entries()) {
    // Check the two largest-gradient elements at which the loss is smooth. Where a ReLU input of
    // some example lies within epsilon of 0, the loss has a kink and a finite difference is not the
    // derivative; such points show as disagreeing forward and backward differences and are skipped.
    const byMagnitude = Array.from(g.data.keys()).sort((a, b) => Math.abs(g.data[b]!) - Math.abs(g.data[a]!));
    let checked = 0;
    for (const element of byMagnitude.slice(0, 10)) {
      const up = lossWith(tensor, element, epsilon);
      const down = lossWith(tensor, element, -epsilon);
      const forward = (up - loss) / epsilon;
      const backward = (loss - down) / epsilon;
      const analytic = g.data[element]!;
      if (Math.abs(forward - backward) > tolerance(analytic)) continue; // kink within epsilon
      const central = (up - down) / (2 * epsilon);
      t.ok(Math.abs(central - analytic) <= tolerance(analytic),
        `${g.name}[${element}]: analytic ${analytic.toExponential(4)} vs numeric ${central.toExponential(4)}`);
      if (++checked === 2) break;
    }
    t.equal(checked, 2, `${g.name}: two smooth elements were checked`);
  }
  trainer.dispose();
});

t.test("gradients() does not change the weights, and its loss/correct agree with evaluate()", async (t) => {
  const trainer = makeTrainer("mlp");
  const before = trainer.parameters();
  const batch = randomBatch(32, 32, 10, 2);
  const result = trainer.gradients(batch.x, batch.y, batch.count);
  t.ok(same(trainer.parameters(), before), "weights unchanged");
  const evaluation = trainer.evaluate(batch.x, batch.y, batch.count);
  t.ok(Math.abs(evaluation.loss - result.loss) < 1e-5, `same loss (${evaluation.loss} vs ${result.loss})`);
  t.equal(evaluation.accuracy, result.correct / batch.count, "same accuracy");
  t.ok(result.gradients.every((g) => g.data.some((v) => v !== 0)), "every weight receives a non-zero gradient");
  trainer.dispose();
});

t.test("evaluate() gives the same answer whatever its chunk size", async (t) => {
  const trainer = makeTrainer("mlp");
  const batch = randomBatch(100, 32, 10, 6);
  const whole = trainer.evaluate(batch.x, batch.y, batch.count);
  const chunked = trainer.evaluate(batch.x, batch.y, batch.count, 7); // 14 chunks of 7 and one of 2
  t.ok(Math.abs(whole.loss - chunked.loss) < 1e-5, `loss ${whole.loss} vs ${chunked.loss}`);
  t.equal(whole.accuracy, chunked.accuracy, "accuracy");
  t.ok(Number.isNaN(trainer.evaluate(new Float32Array(0), new Int32Array(0), 0).accuracy), "an empty set has no accuracy");
  trainer.dispose();
});

t.test("malformed batches are rejected with a clear error", async (t) => {
  const trainer = makeTrainer("mlp");
  const batch = randomBatch(4, 32, 10, 1);
  t.throws(() => trainer.gradients(batch.x.subarray(1), batch.y, 4), /x has 127 values but count \* features is 4 \* 32/, "short x");
  t.throws(() => trainer.gradients(batch.x, batch.y.subarray(1), 4), /y has 3 labels/, "short y");
  t.throws(() => trainer.gradients(batch.x, Int32Array.from([0, 1, 10, 2]), 4), /label 10 of example 2/, "label out of range");
  t.throws(() => trainer.gradients(new Float32Array(0), new Int32Array(0), 0), /empty/, "empty batch");
  trainer.dispose();
});

t.test("no tensor leaks across repeated calls", async (t) => {
  const trainer = makeTrainer("mlp");
  const batch = randomBatch(32, 32, 10, 3);
  const run = () => {
    const { gradients } = trainer.gradients(batch.x, batch.y, batch.count);
    trainer.setParameters(trainer.parameters().map((p, i) => ({ ...p, data: p.data.map((v, j) => v - 0.01 * gradients[i]!.data[j]!) })));
    trainer.evaluate(batch.x, batch.y, batch.count, 10);
  };
  run(); // warm-up: lets tfjs allocate anything it caches once
  const before = tf.memory().numTensors;
  for (let i = 0; i < 50; i++) run();
  t.equal(tf.memory().numTensors, before, `tensor count stays at ${before} over 50 gradients/setParameters/evaluate rounds`);
  trainer.dispose();
});

t.test(`plain SGD through gradients() + setParameters() learns the synthetic task (${backend})`, async (t) => {
  const dataset = makeSyntheticDataset({ seed: 1, trainExamples: 8000, testExamples: 2000 });
  const slice = sliceForPart(dataset.train.count, 0, 1, 1);
  const learningRate = 0.1;
  const batchSize = 32;
  const epochs = 3;

  const train = (model: ModelName) => {
    const trainer = makeTrainer(model, dataset.features, dataset.classes, 7);
    let parameters = trainer.parameters();
    let afterOneStep = Number.NaN;
    for (let epoch = 0; epoch < epochs; epoch++) {
      for (const indices of epochBatches(slice, batchSize, 1, epoch)) {
        const batch = gather(dataset.train, indices);
        const { gradients } = trainer.gradients(batch.x, batch.y, batch.count);
        // The "server side": w <- w - lr * g, applied outside the Trainer.
        parameters = parameters.map((p, i) => ({ ...p, data: p.data.map((v, j) => v - learningRate * gradients[i]!.data[j]!) }));
        trainer.setParameters(parameters);
        if (Number.isNaN(afterOneStep)) afterOneStep = trainer.evaluate(dataset.test.x, dataset.test.y, dataset.test.count).accuracy;
      }
    }
    const final = trainer.evaluate(dataset.test.x, dataset.test.y, dataset.test.count);
    trainer.dispose();
    return { afterOneStep, final };
  };

  const started = performance.now();
  const mlp = train("mlp");
  const linear = train("linear");
  const seconds = (performance.now() - started) / 1000;
  t.comment(`bayes ${dataset.bayesAccuracy.toFixed(4)}; mlp after 1 step ${mlp.afterOneStep.toFixed(4)}, after ${epochs} epochs ` +
    `${mlp.final.accuracy.toFixed(4)} (loss ${mlp.final.loss.toFixed(4)}); linear ${linear.final.accuracy.toFixed(4)}; ${seconds.toFixed(1)} s`);
  t.ok(mlp.afterOneStep < 0.3, `after one step the MLP is near chance (${mlp.afterOneStep})`);
  t.ok(mlp.final.accuracy > 0.75, `after ${epochs} epochs the MLP reaches ${mlp.final.accuracy} > 0.75`);
  t.ok(mlp.final.accuracy < dataset.bayesAccuracy + 0.02, `and does not beat the Bayes accuracy ${dataset.bayesAccuracy}`);
  t.ok(linear.final.accuracy < mlp.final.accuracy - 0.2, `a linear model does clearly worse (${linear.final.accuracy})`);
});
