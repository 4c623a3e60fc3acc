import t, { type Test } from "tap";
import { EncodedValues, type ValueFormat } from "@distributed-ps/common/encoded-values.ts";
import { encodeBfloat16, encodeFloat16, type GradientSummand } from "@distributed-ps/common/kernels/simd.ts";
import { cutIntoUnits, ParallelStep } from "../src/optimizer/parallel-step.ts";
import { runStepJob, type StepJob } from "../src/optimizer/step-job.ts";
import { sharedBytes, sharedFloat32 } from "../src/store/shared-memory.ts";

/** Deterministic values in ±scale. */
function values(n: number, seed: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 4294967296 - 0.5) * 2 * scale;
  }
  return out;
}

function inMemory(src: Float32Array, shared: boolean): Float32Array {
  const a = shared ? sharedFloat32(src.length) : new Float32Array(src.length);
  a.set(src);
  return a;
}

/** `src` encoded in `format`, kept as the server keeps a pushed gradient (shared or ordinary memory). */
function kept(src: Float32Array, format: Exclude<ValueFormat, "float32">, shared: boolean): EncodedValues {
  const bytes = new Uint8Array(src.length * 2);
  (format === "float16" ? encodeFloat16 : encodeBfloat16)(src, bytes);
  const storage = shared ? sharedBytes(bytes.length) : new Uint8Array(bytes.length);
  const v = new EncodedValues(format, src.length, storage);
  v.append(bytes);
  return v;
}

interface Tensor {
  param: Float32Array;
  state: Float32Array[];
}

/**
 * One update over a model of several tensors: each optimizer kind, float32 and fp16/bf16 summands,
 * large tensors (cut into many units) and small ones. `shared` picks the memory of each tensor
 * (true, false, or per tensor index), so that jobs the helpers must not see are in the mix.
 */
function model(sizes: number[], shared: (i: number) => boolean): Tensor[] {
  return sizes.map((n, i) => ({
    param: inMemory(values(n, 100 + i, 1), shared(i)),
    state: [inMemory(values(n, 200 + i, 0.1), shared(i)), inMemory(values(n, 300 + i, 0.1).map(Math.abs), shared(i))],
  }));
}

function jobsFor(tensors: Tensor[], grads: GradientSummand[][], step: number): StepJob[] {
  return tensors.map(({ param, state: [a, b] }, i): StepJob => {
    const g = grads[i]!;
    switch (i % 3) {
      case 0:
        return { kind: "sgd", param, grads: g, lr: 0.1, scale: 0.25, weightDecay: 0.01 };
      case 1:
        return { kind: "momentum", param, grads: g, velocity: a!, options: { lr: 0.1, scale: 0.25, weightDecay: 0.01, momentum: 0.9, nesterov: i % 2 === 0 } };
      default:
        return {
          kind: "adam",
          param,
          grads: g,
          m: a!,
          v: b!,
          options: { lr: 0.01, scale: 0.25, beta1: 0.9, beta2: 0.999, c1: 1 - 0.9 ** step, c2: 1 - 0.999 ** step, epsilon: 1e-8, decay: 1 - 0.01 * 0.01 },
        };
    }
  });
}

/** Four summands per tensor: float32, fp16, bf16 and fp16 again, different each step. */
function gradients(sizes: number[], step: number, shared: (i: number) => boolean): GradientSummand[][] {
  return sizes.map((n, i) => [
    inMemory(values(n, step * 1000 + i * 10 + 1, 0.01), shared(i)),
    kept(values(n, step * 1000 + i * 10 + 2, 0.01), "float16", shared(i)),
    kept(values(n, step * 1000 + i * 10 + 3, 0.01), "bfloat16", shared(i)),
    kept(values(n, step * 1000 + i * 10 + 4, 0.01), "float16", shared(i)),
  ]);
}

/** Where two models' parameters and state first differ in any bit, or "none" (a compact message for large tensors). */
function firstDifference(a: Tensor[], b: Tensor[]): string {
  for (let i = 0; i < a.length; i++) {
    const arrays = [a[i]!.param, ...a[i]!.state];
    const others = [b[i]!.param, ...b[i]!.state];
    for (let j = 0; j < arrays.length; j++) {
      const x = new Uint32Array(arrays[j]!.buffer, arrays[j]!.byteOffset, arrays[j]!.length);
      const y = new Uint32Array(others[j]!.buffer, others[j]!.byteOffset, others[j]!.length);
      const at = x.findIndex((bits, k) => bits !== y[k]);
      if (at >= 0) return `tensor ${i} ${j === 0 ? "param" : `state ${j - 1}`}[${at}]: ${arrays[j]![at]} vs ${others[j]![at]}`;
    }
  }
  return "none";
}

// Large tensors are cut into many units (unitElements below); small ones are a unit each.
const SIZES = [300_001, 7, 250_000, 1, 262_147, 64, 100_003, 5_000];

async function compare(t: Test, parallel: ParallelStep, shared: (i: number) => boolean, what: string) {
  t.teardown(() => parallel.close());
  const reference = model(SIZES, shared);
  const split = model(SIZES, shared);
  for (let step = 1; step <= 6; step++) {
    for (const job of jobsFor(reference, gradients(SIZES, step, shared), step)) runStepJob(job);
    parallel.run(jobsFor(split, gradients(SIZES, step, shared), step));
  }
  t.equal(firstDifference(split, reference), "none", `${what}: parameters and optimizer state bit-identical to one thread after 6 updates`);
}

/** Units of the shared tensors over 6 updates of SIZES cut at 4096 elements. */
function sharedUnits(shared: (i: number) => boolean): number {
  return 6 * SIZES.reduce((n, size, i) => n + (shared(i) ? Math.ceil(size / 4096) : 0), 0);
}

t.test("helper threads apply an update exactly as one thread does", async (t) => {
  // The server's thread leaves every unit to the two helpers, so they did all of the work checked.
  const parallel = new ParallelStep({ helpers: 2, minElements: 0, unitElements: 4096, serverThreadClaims: false });
  await compare(t, parallel, () => true, "all in shared memory, every unit on a helper");
  t.equal(parallel.unitsByHelpers, sharedUnits(() => true), "the helpers ran every unit");
});

t.test("jobs outside shared memory run on the server's thread, next to ones the helpers share", async (t) => {
  // Had a job in ordinary memory been posted, a helper would have updated a copy, and the update been lost.
  const everyOther = (i: number) => i % 2 === 0;
  const parallel = new ParallelStep({ helpers: 1, minElements: 0, unitElements: 4096, serverThreadClaims: false });
  await compare(t, parallel, everyOther, "every other tensor in ordinary memory");
  t.equal(parallel.unitsByHelpers, sharedUnits(everyOther), "the helper ran exactly the shared jobs' units");
});

t.test("the server's thread and the helpers claiming units together give the same result", async (t) => {
  // Who runs which unit depends on timing here; the result must not.
  await compare(t, new ParallelStep({ helpers: 2, minElements: 0, unitElements: 4096 }), (i) => i !== 3, "one tensor in ordinary memory");
});

t.test("small updates and zero helpers run on the server's thread alone", async (t) => {
  for (const options of [{ helpers: 0, minElements: 0 }, { helpers: 2, minElements: 1 << 30 }]) {
    const parallel = new ParallelStep({ ...options, unitElements: 4096 });
    t.teardown(() => parallel.close());
    const reference = model(SIZES, () => true);
    const local = model(SIZES, () => true);
    for (const job of jobsFor(reference, gradients(SIZES, 1, () => true), 1)) runStepJob(job);
    parallel.run(jobsFor(local, gradients(SIZES, 1, () => true), 1));
    t.equal(firstDifference(local, reference), "none", `${JSON.stringify(options)}: same result`);
    t.equal(parallel.unitsByHelpers, 0, `${JSON.stringify(options)}: no unit ran on a helper`);
  }
});

t.test("a job whose arrays do not match is refused before any thread starts, and nothing is updated", async (t) => {
  const parallel = new ParallelStep({ helpers: 1, minElements: 0, unitElements: 4096 });
  t.teardown(() => parallel.close());
  const tensors = model([50_000, 50_000], () => true);
  const before = model([50_000, 50_000], () => true);
  const jobs = jobsFor(tensors, gradients([50_000, 50_000], 1, () => true), 1);
  jobs[1] = { ...jobs[1]!, grads: [sharedFloat32(49_999)] } as StepJob;
  t.throws(() => parallel.run(jobs), /lengths differ \(50000 and 49999\)/, "the length mismatch is named");
  t.equal(firstDifference(tensors, before), "none", "no tensor was touched");
});

t.test("units cover every element of every job once, in pieces of at most unitElements", async (t) => {
  const jobs = model([10, 0, 9, 4], () => false).map((x): StepJob => ({ kind: "sgd", param: x.param, grads: [x.param], lr: 0, scale: 1, weightDecay: 0 }));
  t.same(Array.from(cutIntoUnits(jobs, 4)), [0, 0, 4, 0, 4, 8, 0, 8, 10, 2, 0, 4, 2, 4, 8, 2, 8, 9, 3, 0, 4], "(job, from, to) triples; an empty tensor has none");
});
