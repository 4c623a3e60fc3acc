import t from "tap";
import { initBackend } from "../src/model/backend.ts";
import { createModel, isModelName, type ModelName } from "../src/model/models.ts";
import { Trainer } from "../src/model/trainer.ts";

await initBackend("wasm");

const weightsOf = (name: ModelName, seed: number, inputShape: number[] = [32]) => {
  const trainer = new Trainer(createModel(name, { inputShape, classes: 10, seed }));
  const parameters = trainer.parameters();
  trainer.dispose();
  return parameters;
};
const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

t.test("mlp parameter names and shapes are explicit and stable", async (t) => {
  const expected = [
    ["dense1/kernel", [32, 64]], ["dense1/bias", [64]],
    ["dense2/kernel", [64, 64]], ["dense2/bias", [64]],
    ["dense3/kernel", [64, 10]], ["dense3/bias", [10]],
  ];
  t.same(weightsOf("mlp", 1).map((p) => [p.name, p.shape]), expected, "first model built in this process");
  // tfjs renames variables of later models "dense1/kernel_1", ...; our names must not change.
  t.same(weightsOf("mlp", 1).map((p) => [p.name, p.shape]), expected, "second model built in this process");
  t.same(weightsOf("linear", 1).map((p) => [p.name, p.shape]), [["dense1/kernel", [32, 10]], ["dense1/bias", [10]]],
    "the linear baseline is one dense layer");
});

t.test("the same seed gives bit-identical initial weights, another seed different ones", async (t) => {
  const a = weightsOf("mlp", 77);
  const b = weightsOf("mlp", 77);
  const c = weightsOf("mlp", 78);
  for (const [i, p] of a.entries()) {
    t.ok(bytes(p.data).equals(bytes(b[i]!.data)), `${p.name}: identical for seed 77`);
  }
  t.notOk(bytes(a[0]!.data).equals(bytes(c[0]!.data)), "dense1/kernel differs for seed 78");
  t.notOk(bytes(a[0]!.data.subarray(0, 64 * 32)).equals(bytes(a[2]!.data.subarray(0, 64 * 32))),
    "layers get different seeds (dense1 and dense2 kernels do not share values)");
  t.ok(a[1]!.data.every((v) => v === 0), "biases start at zero");
});

t.test("multi-dimensional inputs are flattened", async (t) => {
  const trainer = new Trainer(createModel("mlp", { inputShape: [4, 4, 2], classes: 3, seed: 1 }));
  t.same(trainer.inputShape, [4, 4, 2], "input shape kept");
  t.equal(trainer.features, 32, "features = 4*4*2");
  t.same(trainer.parameterSpecs()[0], { name: "dense1/kernel", shape: [32, 64] }, "first kernel sees 32 inputs");
  const result = trainer.gradients(new Float32Array(2 * 32).fill(0.5), Int32Array.from([0, 2]), 2);
  t.equal(result.gradients.length, 6, "a gradient for every weight");
  trainer.dispose();
});

t.test("unknown names and bad options are rejected", async (t) => {
  t.notOk(isModelName("resnet50"), "resnet50 is not registered");
  t.ok(isModelName("mlp"), "mlp is registered");
  t.throws(() => createModel("resnet50" as ModelName, { inputShape: [32], classes: 10, seed: 1 }), /unknown model "resnet50"/,
    "createModel names the unknown model");
  t.throws(() => createModel("mlp", { inputShape: [], classes: 10, seed: 1 }), RangeError, "empty input shape");
  t.throws(() => createModel("mlp", { inputShape: [32], classes: 1, seed: 1 }), RangeError, "one class");
});
