/**
 * The onnxruntime engine against the tfjs engine, on the same weights and batch, for every model:
 * loss, accuracy count, every gradient, batch norm's running statistics, evaluation.
 *
 * Tolerance: per gradient tensor, max |onnx - tfjs| ≤ 1e-4 × max |tfjs| (+1e-7 for all-zero
 * tensors); loss within 1e-5 relative; running statistics within 1e-5. The two engines sum in
 * different orders (MLAS GEMM/convolution vs XNNPACK), so bit equality is not expected; measured
 * differences are ~1e-7 relative (dense), ~1e-6 (cnn), ~1e-5 (resnet18, 20 layers deep). 1e-4 of a
 * tensor's largest gradient is enough because it is 10× below what the wire already rounds away
 * when a user picks PUSH_DTYPE=fp16 (2⁻¹¹ ≈ 5e-4 relative) and 40× below bf16 (2⁻⁸ ≈ 4e-3): a
 * difference the training run cannot tell from its own rounding. A wrong rule (a transposed kernel,
 * a missing term of the batch-norm gradient, an off-by-one pad) is off by 1e-2 or more.
 *
 * The loss is piecewise smooth (ReLU), so where an input of a ReLU sits within rounding of 0 the
 * engines may take the gradient from either side. Seen once, resnet18 at 32x32 with a batch of 4:
 * tfjs-wasm's gradients were up to 17% (of a tensor's largest value) apart in the last stage from
 * both ONNX Runtime and tfjs-cpu, which agreed to 8e-6, and a central finite difference came out at
 * the mean of the two values: a kink straddled, not a wrong rule. The points below are fixed
 * (seeded), and none sits on a kink.
 */
import t from "tap";
import { spawnSync } from "node:child_process";
import * as tfl from "@tensorflow/tfjs-layers";
import { initBackend } from "../src/model/backend.ts";
import { createModel, type ModelName } from "../src/model/models.ts";
import { Trainer } from "../src/model/trainer.ts";
import { OnnxTrainer } from "../src/onnx/onnx-trainer.ts";
import { loadOnnxRuntime, openSession } from "../src/onnx/runtime.ts";
import { Random } from "../src/data/random.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { bindInitializers } from "@distributed-ps/common/onnx/bind-initializers.ts";
import { referencePython } from "../../scripts/lib/python.ts";

await initBackend("wasm");
const ort = await loadOnnxRuntime();

function batch(n: number, features: number, classes: number, seed: number) {
  const r = new Random(seed);
  return { x: Float32Array.from({ length: n * features }, () => r.normal()), y: Int32Array.from({ length: n }, () => r.nextInt(classes)), count: n };
}

/** Worst per-tensor max |a - b| / max |a| over two lists of the same tensors. */
function worstRelative(a: readonly NamedTensor[], b: readonly NamedTensor[]): { name: string; relative: number } {
  let worst = { name: "", relative: 0 };
  a.forEach((ta, i) => {
    const tb = b[i]!;
    if (ta.name !== tb.name || ta.data.length !== tb.data.length) throw new Error(`tensor ${i}: ${ta.name} vs ${tb.name}`);
    let diff = 0;
    let scale = 0;
    for (let j = 0; j < ta.data.length; j++) {
      diff = Math.max(diff, Math.abs(ta.data[j]! - tb.data[j]!));
      scale = Math.max(scale, Math.abs(ta.data[j]!));
    }
    const relative = diff / (scale + 1e-7 / 1e-4);
    if (relative > worst.relative) worst = { name: ta.name, relative };
  });
  return worst;
}

const CASES: { model: ModelName; inputShape: number[]; classes: number; batch: number }[] = [
  { model: "linear", inputShape: [32], classes: 10, batch: 32 },
  { model: "mlp", inputShape: [32], classes: 10, batch: 32 },
  { model: "mlp", inputShape: [28, 28, 1], classes: 10, batch: 16 },
  { model: "cnn", inputShape: [28, 28, 1], classes: 10, batch: 8 },
  { model: "cnn", inputShape: [32, 32, 3], classes: 100, batch: 4 },
  // 8x8: every stage, stride and shortcut of the 32x32 network, at a fraction of its cost.
  { model: "resnet18", inputShape: [8, 8, 3], classes: 10, batch: 8 },
];

for (const c of CASES) {
  t.test(`${c.model} ${c.inputShape.join("x")}: the same loss, gradients, statistics and evaluation as tfjs`, async (t) => {
    const options = { inputShape: c.inputShape, classes: c.classes, seed: 11 };
    const tfjs = new Trainer(createModel(c.model, options));
    const onnx = await OnnxTrainer.create(createModel(c.model, options), { threads: 1 });
    t.same(onnx.parameterSpecs(), tfjs.parameterSpecs(), "the same parameter names, shapes and order");
    t.same(onnx.nonTrainableState().map((s) => s.name), tfjs.nonTrainableState().map((s) => s.name), "the same running statistics");
    t.same(worstRelative(tfjs.parameters(), onnx.parameters()).relative, 0, "the same seeded initial weights");

    // Move away from the initial weights (deterministically) so that no layer sits at a symmetric point.
    const r = new Random(5);
    const moved = tfjs.parameters().map((p) => ({ ...p, data: p.data.map((v) => v + 0.02 * r.normal()) }));
    tfjs.setParameters(moved);
    onnx.setParameters(moved);

    const features = c.inputShape.reduce((a, b) => a * b, 1);
    for (const [step, seed] of [[1, 21], [2, 22]] as const) {
      const data = batch(c.batch, features, c.classes, seed);
      const a = tfjs.gradients(data.x, data.y, data.count);
      const b = await onnx.gradients(data.x, data.y, data.count);
      t.ok(Math.abs(a.loss - b.loss) <= 1e-5 * Math.abs(a.loss), `step ${step}: loss ${b.loss} vs tfjs ${a.loss}`);
      t.equal(b.correct, a.correct, `step ${step}: the same number of correct predictions`);
      const worst = worstRelative(a.gradients, b.gradients);
      t.ok(worst.relative <= 1e-4, `step ${step}: every gradient within 1e-4 of its largest value (worst ${worst.relative.toExponential(1)}, ${worst.name})`);
      const stats = worstRelative(tfjs.nonTrainableState(), onnx.nonTrainableState());
      t.ok(stats.relative <= 1e-5, `step ${step}: running statistics agree (worst ${stats.relative.toExponential(1)})`);
    }
    const test = batch(24, features, c.classes, 30);
    const ea = tfjs.evaluate(test.x, test.y, test.count, 10);
    const eb = await onnx.evaluate(test.x, test.y, test.count, 10);
    t.ok(Math.abs(ea.loss - eb.loss) <= 1e-5 * Math.abs(ea.loss), `evaluation loss ${eb.loss} vs tfjs ${ea.loss} (running statistics, chunks of 10)`);
    t.equal(eb.accuracy, ea.accuracy, "evaluation accuracy");
    tfjs.dispose();
    onnx.dispose();
  });
}

t.test("a wrong gradient rule would be caught: a perturbed gradient is far outside the tolerance", async (t) => {
  // The tolerance must be able to fail: flip one conv kernel's spatial axes (a plausible bug).
  const options = { inputShape: [28, 28, 1], classes: 10, seed: 11 };
  const tfjs = new Trainer(createModel("cnn", options));
  const onnx = await OnnxTrainer.create(createModel("cnn", options), { threads: 1 });
  const data = batch(8, 784, 10, 21);
  const a = tfjs.gradients(data.x, data.y, data.count);
  const b = await onnx.gradients(data.x, data.y, data.count);
  const kernel = b.gradients.findIndex((g) => g.name === "conv2/kernel");
  const flipped = b.gradients.map((g, i) => (i === kernel ? { ...g, data: flipSpatial(g.data, g.shape as number[]) } : g));
  t.ok(worstRelative(a.gradients, flipped).relative > 1e-2, "a flipped kernel gradient is off by more than 1e-2");
  tfjs.dispose();
  onnx.dispose();
});

function flipSpatial(data: Float32Array, [kh, kw, ci, co]: number[]): Float32Array {
  const out = new Float32Array(data.length);
  for (let y = 0; y < kh!; y++) for (let x = 0; x < kw!; x++) {
    const from = ((y * kw! + x) * ci!) * co!;
    const to = (((kh! - 1 - y) * kw! + (kw! - 1 - x)) * ci!) * co!;
    out.set(data.subarray(from, from + ci! * co!), to);
  }
  return out;
}

t.test("batch norm: training moves the running statistics, evaluation reads them and changes nothing", async (t) => {
  const onnx = await OnnxTrainer.create(createModel("resnet18", { inputShape: [8, 8, 3], classes: 10, seed: 2 }), { threads: 1 });
  const data = batch(4, 8 * 8 * 3, 10, 5);
  const initial = onnx.nonTrainableState();
  t.ok(initial[0]!.data.every((v) => v === 0) && initial[1]!.data.every((v) => v === 1), "moving mean 0, variance 1 at start");
  const params = onnx.parameters();
  const before = await onnx.evaluate(data.x, data.y, data.count);
  t.same(onnx.nonTrainableState(), initial, "evaluate() does not touch the statistics");
  await onnx.gradients(data.x, data.y, data.count);
  t.notSame(onnx.nonTrainableState()[0]!.data, initial[0]!.data, "gradients() moved the moving mean");
  t.same(onnx.parameters(), params, "but not the parameters");
  t.not((await onnx.evaluate(data.x, data.y, data.count)).loss, before.loss, "evaluation uses the moved statistics");
  onnx.setNonTrainableState(initial);
  t.equal((await onnx.evaluate(data.x, data.y, data.count)).loss, before.loss, "setNonTrainableState() restores them");
  t.throws(() => onnx.setNonTrainableState([{ name: "stem_bn/moving_mean", shape: [3], data: new Float32Array(3) }]), /"stem_bn\/moving_mean" has shape \[3\], the model expects \[64\]/);
  onnx.dispose();
});

t.test("bad input is refused with one clear line and changes nothing", async (t) => {
  const onnx = await OnnxTrainer.create(createModel("mlp", { inputShape: [32], classes: 10, seed: 1 }), { threads: 1 });
  const params = onnx.parameters();
  const wrong = params.map((p) => (p.name === "dense2/kernel" ? { ...p, shape: [64, 9], data: new Float32Array(64 * 9) } : p));
  t.throws(() => onnx.setParameters(wrong), /setParameters: tensor "dense2\/kernel" has shape \[64, 9\], the model expects \[64, 64\]/);
  t.throws(() => onnx.setParameters(params.slice(1)), /missing tensor\(s\) "dense1\/kernel"/);
  t.throws(() => onnx.setParameters([...params, { name: "nope", shape: [1], data: new Float32Array(1) }]), /unknown tensor "nope"/);
  t.same(onnx.parameters(), params, "nothing was assigned");
  await t.rejects(onnx.gradients(new Float32Array(64), Int32Array.of(1, 12), 2), /label 12 of example 1 is outside \[0, 10\)/);
  await t.rejects(onnx.gradients(new Float32Array(63), Int32Array.of(1, 2), 2), /x has 63 values but count \* features is 2 \* 32/);
  await t.rejects(OnnxTrainer.create(createModel("mlp", { inputShape: [32], classes: 10, seed: 1 }), { threads: 0 }), /threads must be a positive integer, got 0/);
  onnx.dispose();
});

t.test("a model with a layer the translation does not know is refused by name, before ONNX Runtime sees it", async (t) => {
  const input = tfl.input({ shape: [8], name: "input" });
  const hidden = tfl.layers.dense({ name: "hidden", units: 4, activation: "tanh" }).apply(input) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ name: "out", units: 3 }).apply(hidden) as tfl.SymbolicTensor;
  await t.rejects(OnnxTrainer.create(tfl.model({ inputs: input, outputs: out })), /layer "hidden": activation "tanh" has no ONNX translation/);
  const dropped = tfl.layers.dropout({ name: "drop", rate: 0.5 }).apply(input) as tfl.SymbolicTensor;
  const out2 = tfl.layers.dense({ name: "out2", units: 3 }).apply(dropped) as tfl.SymbolicTensor;
  await t.rejects(OnnxTrainer.create(tfl.model({ inputs: input, outputs: out2 })), /layer "drop" \(Dropout\) has no ONNX translation/);
});

t.test("a graph ONNX Runtime rejects: one line naming the graph", async (t) => {
  const error = await openSession(new Uint8Array([8, 1, 18, 3, 1, 2, 3]), "the training graph of model \"x\"", 1).then(() => undefined, (e: unknown) => e as Error);
  t.match(error?.message, /^ONNX Runtime refused the training graph of model "x": \S/);
  t.notMatch(error?.message, /\n/, "one line");
});

t.test("the exported inference graph: loads in a fresh ONNX Runtime session and classifies as the trainer evaluates", async (t) => {
  const onnx = await OnnxTrainer.create(createModel("resnet18", { inputShape: [8, 8, 3], classes: 10, seed: 4 }), { threads: 1 });
  const train = batch(8, 8 * 8 * 3, 10, 6);
  for (let i = 0; i < 3; i++) await onnx.gradients(train.x, train.y, train.count); // move the running statistics
  const test = batch(16, 8 * 8 * 3, 10, 7);
  const evaluation = await onnx.evaluate(test.x, test.y, test.count);
  const session = await ort.InferenceSession.create(onnx.inferenceModel({ test: "yes" }));
  t.same(session.inputNames, ["input"]);
  t.same(session.outputNames, ["logits", "probabilities"]);
  const out = await session.run({ input: new ort.Tensor("float32", test.x, [16, 8, 8, 3]) });
  const logits = out.logits!.data as Float32Array;
  let correct = 0;
  let loss = 0;
  for (let i = 0; i < 16; i++) {
    const row = logits.subarray(i * 10, i * 10 + 10);
    const max = Math.max(...row);
    if (row.indexOf(max) === test.y[i]) correct++;
    loss += Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0)) + max - row[test.y[i]!]!;
  }
  t.equal(correct / 16, evaluation.accuracy, "the same accuracy");
  t.ok(Math.abs(loss / 16 - evaluation.loss) < 1e-4, `the same loss (${loss / 16} vs ${evaluation.loss})`);
  const probabilities = out.probabilities!.data as Float32Array;
  t.ok(Math.abs(probabilities.subarray(0, 10).reduce((a, b) => a + b, 0) - 1) < 1e-5, "probabilities sum to 1");
  await session.release();

  // ONNX's own checker, where the ONNX Python package is installed (the test machine's setup
  // installs python3-onnx): the exported graph is valid ONNX, not only something ORT accepts.
  const checked = spawnSync(referencePython(), ["-c", "import onnx,sys; onnx.checker.check_model(onnx.load_from_string(sys.stdin.buffer.read()), full_check=True); print('ok')"], { input: onnx.inferenceModel(), encoding: "utf8" });
  if (checked.error !== undefined || /No module named/.test(checked.stderr)) t.comment("python3-onnx is not installed: onnx.checker not run");
  else t.equal(checked.stdout.trim(), "ok", `onnx.checker accepts the exported model ${checked.stderr}`);
  onnx.dispose();
});

t.test("the tfjs engine's weights and running statistics fill the same inference graph the server exports", async (t) => {
  const tfjs = new Trainer(createModel("resnet18", { inputShape: [8, 8, 3], classes: 10, seed: 9 }));
  const train = batch(8, 8 * 8 * 3, 10, 10);
  for (let i = 0; i < 2; i++) tfjs.gradients(train.x, train.y, train.count); // move the running statistics
  const state = tfjs.nonTrainableState();
  t.equal(state.length, 40, "resnet18's 20 batch norms, mean and variance each");
  const test = batch(32, 8 * 8 * 3, 10, 11);
  const evaluation = await tfjs.evaluate(test.x, test.y, test.count);
  // What the server does at the end of a run: the worker's graph, the tensors bound by name.
  const model = bindInitializers(tfjs.inferenceGraph(), [...tfjs.parameters(), ...state]);
  const session = await ort.InferenceSession.create(model);
  const logits = (await session.run({ input: new ort.Tensor("float32", test.x, [32, 8, 8, 3]) })).logits!.data as Float32Array;
  let correct = 0;
  for (let i = 0; i < 32; i++) {
    const row = logits.subarray(i * 10, i * 10 + 10);
    if (row.indexOf(Math.max(...row)) === test.y[i]) correct++;
  }
  t.equal(correct / 32, evaluation.accuracy, `the accuracy tfjs evaluates (${evaluation.accuracy})`);
  await session.release();
  tfjs.dispose();
});
