import t from "tap";
import { checkSplit } from "../src/data/dataset.ts";
import { makeSyntheticDataset } from "../src/data/synthetic.ts";

const bytes = (a: Float32Array | Int32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

t.test("the same seed builds a bit-identical dataset", async (t) => {
  const a = makeSyntheticDataset({ seed: 123, trainExamples: 2000, testExamples: 500 });
  const b = makeSyntheticDataset({ seed: 123, trainExamples: 2000, testExamples: 500 });
  t.ok(bytes(a.train.x).equals(bytes(b.train.x)), "train.x bytes are identical");
  t.ok(bytes(a.train.y).equals(bytes(b.train.y)), "train.y bytes are identical");
  t.ok(bytes(a.test.x).equals(bytes(b.test.x)), "test.x bytes are identical");
  t.ok(bytes(a.test.y).equals(bytes(b.test.y)), "test.y bytes are identical");
  t.equal(a.bayesAccuracy, b.bayesAccuracy, "bayesAccuracy is identical");
});

t.test("a different seed builds a different dataset", async (t) => {
  const a = makeSyntheticDataset({ seed: 1, trainExamples: 1000, testExamples: 100 });
  const b = makeSyntheticDataset({ seed: 2, trainExamples: 1000, testExamples: 100 });
  t.notOk(bytes(a.train.x).equals(bytes(b.train.x)), "train.x differs between seeds 1 and 2");
  t.notOk(bytes(a.test.x).equals(bytes(b.test.x)), "test.x differs between seeds 1 and 2");
});

t.test("the test set does not depend on how many training examples are drawn", async (t) => {
  const small = makeSyntheticDataset({ seed: 9, trainExamples: 100, testExamples: 300 });
  const large = makeSyntheticDataset({ seed: 9, trainExamples: 3000, testExamples: 300 });
  t.ok(bytes(small.test.x).equals(bytes(large.test.x)), "test.x is the same");
  t.ok(bytes(small.test.y).equals(bytes(large.test.y)), "test.y is the same");
  t.ok(bytes(small.train.x).equals(bytes(large.train.x.subarray(0, small.train.x.length))),
    "the smaller train set is a prefix of the larger one");
});

t.test("shapes, label range and class balance", async (t) => {
  const ds = makeSyntheticDataset({ seed: 4, trainExamples: 5000, testExamples: 1000 });
  t.same(ds.inputShape, [32], "default inputShape is [32]");
  t.equal(ds.features, 32, "default features");
  t.equal(ds.classes, 10, "default classes");
  t.equal(ds.train.count, 5000, "train count");
  t.equal(ds.test.count, 1000, "test count");
  t.doesNotThrow(() => checkSplit(ds.train, ds.features, ds.classes, "train"), "train arrays agree, labels in [0, 10)");
  t.doesNotThrow(() => checkSplit(ds.test, ds.features, ds.classes, "test"), "test arrays agree, labels in [0, 10)");
  t.ok(ds.train.x.every(Number.isFinite), "every feature is finite");
  const perClass = new Array<number>(ds.classes).fill(0);
  for (const label of ds.train.y) perClass[label] = (perClass[label] ?? 0) + 1;
  t.ok(perClass.every((n) => n > 400 && n < 600), `classes are roughly balanced: ${perClass}`);

  const custom = makeSyntheticDataset({ seed: 4, trainExamples: 10, testExamples: 10, features: 8, classes: 3 });
  t.same(custom.inputShape, [8], "features option sets the input shape");
  t.doesNotThrow(() => checkSplit(custom.train, 8, 3), "labels respect the classes option");
});

t.test("bayesAccuracy lies in the tuned band for several seeds", async (t) => {
  for (const seed of [1, 2, 3, 17, 99]) {
    const { bayesAccuracy } = makeSyntheticDataset({ seed, trainExamples: 0, testExamples: 4000 });
    t.ok(bayesAccuracy >= 0.85 && bayesAccuracy <= 0.92, `seed ${seed}: bayesAccuracy ${bayesAccuracy} in [0.85, 0.92]`);
  }
});

t.test("bayesAccuracy tracks the generating model in the limits", async (t) => {
  // Tiny clusters: the only errors left are the flipped labels.
  const clean = makeSyntheticDataset({ seed: 5, trainExamples: 0, testExamples: 4000, clusterStd: 0.01, labelNoise: 0 });
  t.ok(clean.bayesAccuracy > 0.999, `no noise, tiny clusters: ${clean.bayesAccuracy} is ~1`);
  const noisy = makeSyntheticDataset({ seed: 5, trainExamples: 0, testExamples: 4000, clusterStd: 0.01, labelNoise: 0.3 });
  t.ok(Math.abs(noisy.bayesAccuracy - 0.7) < 0.03, `30% label noise, tiny clusters: ${noisy.bayesAccuracy} is ~0.7`);
  // Huge clusters: classes overlap completely, so the best is chance.
  const blur = makeSyntheticDataset({ seed: 5, trainExamples: 0, testExamples: 4000, clusterStd: 100, labelNoise: 0 });
  t.ok(blur.bayesAccuracy < 0.16, `overlapping clusters: ${blur.bayesAccuracy} is near chance 0.1`);
});

t.test("checkSplit catches inconsistent splits", async (t) => {
  const x = new Float32Array(6);
  t.throws(() => checkSplit({ x, y: new Int32Array(3), count: 2 }, 3, 2), /y has 3 labels but count is 2/, "label count");
  t.throws(() => checkSplit({ x, y: new Int32Array(3), count: 3 }, 3, 2), /x has 6 values/, "row length");
  t.throws(() => checkSplit({ x, y: Int32Array.from([0, 2]), count: 2 }, 3, 2), /label 2 of example 1/, "label range");
});

t.test("invalid options are rejected", async (t) => {
  t.throws(() => makeSyntheticDataset({ seed: 1, trainExamples: -1, testExamples: 1 }), RangeError, "negative trainExamples");
  t.throws(() => makeSyntheticDataset({ seed: 1, trainExamples: 1, testExamples: 1, classes: 1 }), RangeError, "one class");
  t.throws(() => makeSyntheticDataset({ seed: 1, trainExamples: 1, testExamples: 1, labelNoise: 0.9 }), RangeError,
    "label noise that destroys the labels");
  t.throws(() => makeSyntheticDataset({ seed: 1, trainExamples: 1, testExamples: 1, clusterStd: 0 }), RangeError, "zero std");
});
