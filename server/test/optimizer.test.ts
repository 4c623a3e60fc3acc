import t, { type Test } from "tap";
import { parseEnv } from "@distributed-ps/common/env.ts";
import { runOptionsFrom, serverEnvSchema } from "../src/config.ts";
import { Adam } from "../src/optimizer/adam.ts";
import { createOptimizer } from "../src/optimizer/index.ts";
import { Momentum } from "../src/optimizer/momentum.ts";
import type { Optimizer } from "../src/optimizer/optimizer.ts";
import { createSchedule, type ScheduleOptions } from "../src/optimizer/schedule.ts";
import { Sgd } from "../src/optimizer/sgd.ts";
import { runStepJob } from "../src/optimizer/step-job.ts";

/** Plans one step and runs it whole, on this thread. */
function applyStep(opt: Optimizer, ...args: Parameters<Optimizer["plan"]>): void {
  runStepJob(opt.plan(...args));
}

/** Element-wise comparison with float32-level tolerance: 1e-6 relative (1e-9 absolute near 0). */
function close(t: Test, actual: ArrayLike<number>, expected: number[], what: string) {
  t.equal(actual.length, expected.length, `${what}: ${expected.length} elements`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const tol = Math.max(1e-6 * Math.abs(e), 1e-9);
    t.ok(Math.abs(a - e) <= tol, `${what}[${i}]: ${a} ≈ ${e} (±${tol.toExponential(1)})`);
  }
}

const f32 = (...v: number[]) => Float32Array.from(v);

t.test("Sgd without weight decay: p ← p − lr·g", async (t) => {
  const opt: Optimizer = new Sgd({ weightDecay: 0 });
  t.equal(opt.name, "sgd", "name is sgd");
  const p = f32(1, -2, 0.5);
  const g = f32(0.1, 0.2, -0.3);
  applyStep(opt, "w", p, [g], 0.1, 1);
  // [1 − 0.01, −2 − 0.02, 0.5 + 0.03]
  close(t, p, [0.99, -2.02, 0.53], "after step 1 (lr 0.1)");
  close(t, g, [0.1, 0.2, -0.3], "gradient untouched");
  applyStep(opt, "w", p, [f32(1, 1, 1)], 0.5, 2);
  // [0.99 − 0.5, −2.02 − 0.5, 0.53 − 0.5]
  close(t, p, [0.49, -2.52, 0.03], "after step 2 (lr 0.5, g = 1)");
  t.equal(opt.state().size, 0, "plain SGD has no state");
});

t.test("Sgd with weight decay: p ← p − lr·(g + wd·p)", async (t) => {
  const opt: Optimizer = new Sgd({ weightDecay: 0.01 });
  const p = f32(1, -2, 0.5);
  applyStep(opt, "w", p, [f32(0.1, 0.2, -0.3)], 0.1, 1);
  // d = g + 0.01·p = [0.1 + 0.01, 0.2 − 0.02, −0.3 + 0.005] = [0.11, 0.18, −0.295]
  // p − 0.1·d = [1 − 0.011, −2 − 0.018, 0.5 + 0.0295]
  close(t, p, [0.989, -2.018, 0.5295], "after one decayed step");
});

t.test("Momentum, classic (PyTorch): v ← μv + g; p ← p − lr·v", async (t) => {
  const opt: Optimizer = new Momentum({ momentum: 0.9, nesterov: false, weightDecay: 0 });
  t.equal(opt.name, "momentum", "name is momentum");
  const p = f32(1, -1);
  applyStep(opt, "w", p, [f32(1, 2)], 0.1, 1);
  // v = [1, 2]; p = [1 − 0.1, −1 − 0.2]
  close(t, p, [0.9, -1.2], "step 1");
  close(t, opt.state().get("w/velocity")!, [1, 2], "velocity after step 1");
  applyStep(opt, "w", p, [f32(1, 2)], 0.1, 2);
  // v = 0.9·[1, 2] + [1, 2] = [1.9, 3.8]; p = [0.9 − 0.19, −1.2 − 0.38]
  close(t, p, [0.71, -1.58], "step 2");
  applyStep(opt, "w", p, [f32(-1, 0)], 0.1, 3);
  // v = 0.9·[1.9, 3.8] + [−1, 0] = [0.71, 3.42]; p = [0.71 − 0.071, −1.58 − 0.342]
  close(t, p, [0.639, -1.922], "step 3");
  const state = opt.state();
  t.same([...state.keys()], ["w/velocity"], "state exposes exactly w/velocity");
  close(t, state.get("w/velocity")!, [0.71, 3.42], "velocity after step 3");
});

t.test("Momentum, Nesterov (PyTorch): v ← μv + g; p ← p − lr·(g + μv)", async (t) => {
  const opt: Optimizer = new Momentum({ momentum: 0.9, nesterov: true, weightDecay: 0 });
  t.equal(opt.name, "nesterov", "name is nesterov");
  const p = f32(1, -1);
  applyStep(opt, "w", p, [f32(1, 2)], 0.1, 1);
  // v = [1, 2]; g + 0.9v = [1.9, 3.8]; p = [1 − 0.19, −1 − 0.38]
  close(t, p, [0.81, -1.38], "step 1");
  applyStep(opt, "w", p, [f32(1, 2)], 0.1, 2);
  // v = 0.9·[1, 2] + [1, 2] = [1.9, 3.8]; g + 0.9v = [1 + 1.71, 2 + 3.42] = [2.71, 5.42]
  // p = [0.81 − 0.271, −1.38 − 0.542]
  close(t, p, [0.539, -1.922], "step 2");
  applyStep(opt, "w", p, [f32(-1, 0)], 0.1, 3);
  // v = 0.9·[1.9, 3.8] + [−1, 0] = [0.71, 3.42]; g + 0.9v = [−1 + 0.639, 0 + 3.078] = [−0.361, 3.078]
  // p = [0.539 + 0.0361, −1.922 − 0.3078]
  close(t, p, [0.5751, -2.2298], "step 3");
  close(t, opt.state().get("w/velocity")!, [0.71, 3.42], "velocity after step 3");
});

t.test("Momentum with weight decay adds wd·p to the gradient", async (t) => {
  const opt: Optimizer = new Momentum({ momentum: 0.9, nesterov: false, weightDecay: 0.1 });
  const p = f32(2);
  applyStep(opt, "w", p, [f32(0.5)], 0.1, 1);
  // d = 0.5 + 0.1·2 = 0.7; v = 0.7; p = 2 − 0.07
  close(t, p, [1.93], "step 1");
  applyStep(opt, "w", p, [f32(0.5)], 0.1, 2);
  // d = 0.5 + 0.1·1.93 = 0.693; v = 0.9·0.7 + 0.693 = 1.323; p = 1.93 − 0.1323
  close(t, p, [1.7977], "step 2");
});

t.test("Momentum keeps separate state per tensor", async (t) => {
  const opt: Optimizer = new Momentum({ momentum: 0.5, nesterov: false, weightDecay: 0 });
  const a = f32(0);
  const b = f32(0, 0);
  applyStep(opt, "a", a, [f32(1)], 1, 1); // v_a = 1
  applyStep(opt, "b", b, [f32(2, 4)], 1, 1); // v_b = [2, 4]
  applyStep(opt, "a", a, [f32(1)], 1, 2); // v_a = 0.5 + 1 = 1.5; a = −1 − 1.5
  close(t, a, [-2.5], "a after two steps");
  close(t, b, [-2, -4], "b after one step");
  const s = opt.state();
  t.same([...s.keys()].sort(), ["a/velocity", "b/velocity"], "one velocity buffer per tensor");
  close(t, s.get("a/velocity")!, [1.5], "a's velocity");
  close(t, s.get("b/velocity")!, [2, 4], "b's velocity");
});

t.test("Adam over 2 steps with bias correction", async (t) => {
  // β1 = 0.9, β2 = 0.999, ε = 1e-8, lr = 0.01; p = [1, −1]; g1 = [0.5, −2]; g2 = [0.1, 1]
  const opt = new Adam({ beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 });
  t.equal(opt.name, "adam", "name is adam without weight decay");
  const p = f32(1, -1);
  applyStep(opt, "w", p, [f32(0.5, -2)], 0.01, 1);
  // m = 0.1·g = [0.05, −0.2]; v = 0.001·g² = [0.00025, 0.004]
  // c1 = 1 − 0.9 = 0.1; c2 = 1 − 0.999 = 0.001; m̂ = [0.5, −2]; v̂ = [0.25, 4]; √v̂ = [0.5, 2]
  // p = p − 0.01·m̂/(√v̂ + ε) = [1 − 0.01·0.99999998, −1 + 0.01·0.999999995]
  close(t, p, [0.9900000002, -0.99000000005], "step 1: each element moves by ~lr");
  close(t, opt.state().get("w/m")!, [0.05, -0.2], "first moment after step 1");
  close(t, opt.state().get("w/v")!, [0.00025, 0.004], "second moment after step 1");
  applyStep(opt, "w", p, [f32(0.1, 1)], 0.01, 2);
  // m = 0.9·[0.05, −0.2] + 0.1·[0.1, 1] = [0.045 + 0.01, −0.18 + 0.1] = [0.055, −0.08]
  // v = 0.999·[0.00025, 0.004] + 0.001·[0.01, 1] = [0.00024975 + 0.00001, 0.003996 + 0.001] = [0.00025975, 0.004996]
  // c1 = 1 − 0.81 = 0.19; c2 = 1 − 0.998001 = 0.001999
  // m̂ = [0.055/0.19, −0.08/0.19] = [0.28947368, −0.42105263]
  // v̂ = [0.00025975/0.001999, 0.004996/0.001999] = [0.12993997, 2.49924962]; √v̂ = [0.36047187, 1.58090152]
  // step = 0.01·m̂/√v̂ = [0.0080304096, −0.0026633704]
  // p = [0.9900000002 − 0.0080304096, −0.99000000005 + 0.0026633704]
  close(t, p, [0.9819695906, -0.9873366297], "step 2 with bias correction");
  const s = opt.state();
  t.same([...s.keys()].sort(), ["w/m", "w/v"], "state exposes w/m and w/v");
  close(t, s.get("w/m")!, [0.055, -0.08], "first moment after step 2");
  close(t, s.get("w/v")!, [0.00025975, 0.004996], "second moment after step 2");
});

t.test("AdamW: decoupled weight decay p ← p·(1 − lr·wd) − Adam step", async (t) => {
  const opt = new Adam({ beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.1 });
  t.equal(opt.name, "adamw", "name is adamw with weight decay");
  const p = f32(1, -1);
  applyStep(opt, "w", p, [f32(0.5, -2)], 0.01, 1);
  // decay factor 1 − 0.01·0.1 = 0.999; Adam step as above = [0.0099999998, −0.00999999995]
  // p = [0.999 − 0.0099999998, −0.999 + 0.00999999995]
  close(t, p, [0.9890000002, -0.98900000005], "step 1");
  applyStep(opt, "w", p, [f32(0.1, 1)], 0.01, 2);
  // p = [0.9890000002·0.999 − 0.0080304096, −0.98900000005·0.999 + 0.0026633704]
  //   = [0.9880110002 − 0.0080304096, −0.98801100005 + 0.0026633704]
  close(t, p, [0.9799805906, -0.9853476297], "step 2");
  // The moments do not see the decay (decoupled): same as plain Adam.
  close(t, opt.state().get("w/m")!, [0.055, -0.08], "first moment identical to Adam's");
});

const base: ScheduleOptions = { kind: "constant", lr: 0.1, stepSize: 3, gamma: 0.5, decaySteps: 100, minLr: 0.01, warmupSteps: 0 };

t.test("createSchedule: constant", async (t) => {
  const s = createSchedule(base);
  for (const u of [0, 1, 99, 1e6]) t.equal(s(u), 0.1, `lr at update ${u} is 0.1`);
});

t.test("createSchedule: step multiplies by gamma every stepSize updates", async (t) => {
  const s = createSchedule({ ...base, kind: "step" });
  // stepSize 3, gamma 0.5: updates 0..2 → 0.1, 3..5 → 0.05, 6..8 → 0.025, 9 → 0.0125
  const expected: [number, number][] = [
    [0, 0.1],
    [2, 0.1],
    [3, 0.05],
    [5, 0.05],
    [6, 0.025],
    [9, 0.0125],
  ];
  for (const [u, lr] of expected) t.ok(Math.abs(s(u) - lr) < 1e-15, `lr at update ${u} is ${lr} (got ${s(u)})`);
});

t.test("createSchedule: cosine from lr to minLr over decaySteps, then minLr", async (t) => {
  const s = createSchedule({ ...base, kind: "cosine" });
  // minLr + ½(lr − minLr)(1 + cos(π·t/100)), lr − minLr = 0.09
  const expected: [number, number, string][] = [
    [0, 0.1, "start: 0.01 + 0.045·2"],
    [25, 0.0868198052, "quarter: 0.01 + 0.045·(1 + √½) = 0.01 + 0.045·1.70710678"],
    [50, 0.055, "midpoint: 0.01 + 0.045·1"],
    [100, 0.01, "end: 0.01 + 0.045·0"],
    [101, 0.01, "beyond decaySteps: minLr"],
    [100_000, 0.01, "far beyond decaySteps: minLr"],
  ];
  for (const [u, lr, why] of expected) t.ok(Math.abs(s(u) - lr) < 1e-10, `update ${u}: ${lr} (${why}); got ${s(u)}`);
});

t.test("createSchedule: linear warm-up, then the schedule starting at 0", async (t) => {
  const c = createSchedule({ ...base, warmupSteps: 4 });
  // lr·(t+1)/4 for t < 4: 0.025, 0.05, 0.075, 0.1; then constant 0.1
  for (const [u, lr] of [
    [0, 0.025],
    [1, 0.05],
    [2, 0.075],
    [3, 0.1],
    [4, 0.1],
    [50, 0.1],
  ] as const) {
    t.ok(Math.abs(c(u) - lr) < 1e-15, `constant with warm-up, update ${u}: ${lr} (got ${c(u)})`);
  }
  const cos = createSchedule({ ...base, kind: "cosine", warmupSteps: 4 });
  t.ok(Math.abs(cos(0) - 0.025) < 1e-15, "cosine warm-up starts at lr/4 = 0.025");
  t.ok(Math.abs(cos(3) - 0.1) < 1e-15, "cosine warm-up reaches lr at update 3");
  t.ok(Math.abs(cos(4) - 0.1) < 1e-15, "cosine starts at progress 0 right after warm-up (update 4 → lr)");
  t.ok(Math.abs(cos(54) - 0.055) < 1e-12, "update 54 is the cosine midpoint (4 + 50): 0.055");
  t.ok(Math.abs(cos(104) - 0.01) < 1e-12, "update 104 is the cosine end (4 + 100): minLr");
  const st = createSchedule({ ...base, kind: "step", warmupSteps: 4 });
  t.ok(Math.abs(st(6) - 0.1) < 1e-15, "step after warm-up: update 6 is schedule step 2 → 0.1");
  t.ok(Math.abs(st(7) - 0.05) < 1e-15, "step after warm-up: update 7 is schedule step 3 → 0.05");
});

const fromEnv = (env: Record<string, string>) => createOptimizer(runOptionsFrom(parseEnv(serverEnvSchema, env)).optimizer);

t.test("the optimizer and schedule the configuration asks for (runOptionsFrom, createOptimizer)", async (t) => {
  const pick = fromEnv;
  t.equal(pick({}).optimizer.name, "sgd", "default: sgd");
  t.type(pick({}).optimizer, Sgd, "default optimizer is an Sgd");
  t.type(pick({ OPTIMIZER: "momentum" }).optimizer, Momentum, "OPTIMIZER=momentum → Momentum");
  t.equal(pick({ OPTIMIZER: "momentum", NESTEROV: "true" }).optimizer.name, "nesterov", "NESTEROV=true → nesterov");
  t.equal(pick({ OPTIMIZER: "momentum", NESTEROV: "false" }).optimizer.name, "momentum", "NESTEROV=false → classic momentum");
  t.type(pick({ OPTIMIZER: "adam" }).optimizer, Adam, "OPTIMIZER=adam → Adam");
  t.equal(pick({ OPTIMIZER: "adam" }).optimizer.name, "adam", "no weight decay → adam");
  t.equal(pick({ OPTIMIZER: "adam", WEIGHT_DECAY: "0.01" }).optimizer.name, "adamw", "weight decay → adamw");

  const { schedule } = pick({ LEARNING_RATE: "0.2", LR_SCHEDULE: "step", LR_STEP_SIZE: "10", LR_GAMMA: "0.5", LR_WARMUP_STEPS: "2" });
  // warm-up 2: 0.1, 0.2; then step schedule from 0: updates 2..11 → 0.2, 12 → 0.1
  t.ok(Math.abs(schedule(0) - 0.1) < 1e-15, "warm-up from LR_WARMUP_STEPS: update 0 → 0.2/2");
  t.ok(Math.abs(schedule(11) - 0.2) < 1e-15, "update 11 is step-schedule update 9 → 0.2");
  t.ok(Math.abs(schedule(12) - 0.1) < 1e-15, "update 12 is step-schedule update 10 → 0.2·0.5");
});

t.test("momentum without NESTEROV set runs classic momentum", async (t) => {
  // NESTEROV defaults to false, so OPTIMIZER=momentum alone must be classic (PyTorch default).
  const { optimizer } = fromEnv({ OPTIMIZER: "momentum", MOMENTUM: "0.9" });
  t.equal(optimizer.name, "momentum", "NESTEROV unset → classic momentum");
  const p = f32(1, -1);
  applyStep(optimizer, "w", p, [f32(1, 2)], 0.1, 1);
  // classic: p − 0.1·[1, 2] = [0.9, −1.2]   (Nesterov would give [0.81, −1.38])
  close(t, p, [0.9, -1.2], "one step moves by lr·g, not lr·(g + μv)");
});

t.test("every optimizer's gradScale equals applying the pre-scaled gradient, and leaves the gradient alone", async (t) => {
  const make: [string, () => Optimizer][] = [
    ["sgd", () => new Sgd({ weightDecay: 0.01 })],
    ["momentum", () => new Momentum({ momentum: 0.9, nesterov: false, weightDecay: 0.01 })],
    ["nesterov", () => new Momentum({ momentum: 0.9, nesterov: true, weightDecay: 0.01 })],
    ["adamw", () => new Adam({ beta1: 0.9, beta2: 0.999, epsilon: 0.1, weightDecay: 0.01 })], // a large ε: Adam is otherwise nearly scale-invariant
  ];
  for (const [name, create] of make) {
    const scaled = create();
    const reference = create();
    const p = f32(1, -2, 0.5);
    const q = f32(1, -2, 0.5);
    for (let step = 1; step <= 3; step++) {
      const sum = f32(0.4 * step, -0.8, 1.2);
      applyStep(scaled, "w", p, [sum], 0.1, step, 0.25);
      t.same(Array.from(sum), Array.from(f32(0.4 * step, -0.8, 1.2)), `${name} step ${step}: gradient unchanged`);
      applyStep(reference, "w", q, [f32(0.1 * step, -0.2, 0.3)], 0.1, step);
    }
    close(t, p, Array.from(q), `${name}: scaled sum ≡ averaged gradient`);
  }
});

t.test("every optimizer given several gradients applies their float32 sum, in the order given", async (t) => {
  const make: [string, () => Optimizer][] = [
    ["sgd", () => new Sgd({ weightDecay: 0.01 })],
    ["momentum", () => new Momentum({ momentum: 0.9, nesterov: false, weightDecay: 0.01 })],
    ["adamw", () => new Adam({ beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01 })],
  ];
  // In float32, (1 + 3e-8) + 3e-8 is 1 while 1 + (3e-8 + 3e-8) is not: the order of the sum shows.
  const a = f32(1, 3, -0.5);
  const b = f32(3e-8, 0.25, 0.125);
  const c = f32(3e-8, -1, 2);
  const leftToRight = f32(1, 3, -0.5);
  for (const g of [b, c]) leftToRight.forEach((x, i) => (leftToRight[i] = x + g[i]!));
  t.not(leftToRight[0], Math.fround(1 + Math.fround(3e-8 + 3e-8)), "the summing order changes the first element");
  for (const [name, create] of make) {
    const summed = create();
    const reference = create();
    const p = f32(1, -2, 0.5);
    const q = f32(1, -2, 0.5);
    for (let step = 1; step <= 2; step++) {
      applyStep(summed, "w", p, [a, b, c], 0.1, step, 1 / 3);
      applyStep(reference, "w", q, [leftToRight], 0.1, step, 1 / 3);
    }
    t.same(Array.from(p), Array.from(q), `${name}: [a, b, c] ≡ [a + b + c]`);
    t.same(Array.from(a), [1, 3, -0.5], `${name}: the first summand is left alone`);
  }
});

t.test("optimizer state lives in shared memory, also when loaded from a checkpoint", async (t) => {
  const opt = new Adam({ beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 });
  const job = opt.plan("w", f32(1, 2), [f32(0.5, 0.5)], 0.1, 1);
  t.ok(job.kind === "adam" && job.m.buffer instanceof SharedArrayBuffer && job.v.buffer instanceof SharedArrayBuffer, "new state");
  const restored = new Momentum({ momentum: 0.9, nesterov: false, weightDecay: 0 });
  restored.loadState(new Map([["w/velocity", f32(3, 4)]]));
  const again = restored.plan("w", f32(1, 2), [f32(0, 0)], 0.1, 1);
  t.ok(again.kind === "momentum" && again.velocity.buffer instanceof SharedArrayBuffer, "loaded state");
  t.same(again.kind === "momentum" ? Array.from(again.velocity) : [], [3, 4], "with the loaded values");
});
