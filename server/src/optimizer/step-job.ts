/**
 * One tensor's optimizer step as data: which kernel, the arrays it reads and writes, its scalars.
 *
 * Why data and not a call: a step is elementwise, so a large tensor's step can be cut into element
 * ranges and run on several threads at once (parallel-step.ts). The optimizer decides what the step
 * is (its state buffers, Adam's bias corrections for this step); whoever runs it decides where.
 */
import { EncodedValues } from "@distributed-ps/common/encoded-values.ts";
import {
  adamStep,
  momentumStep,
  sgdStep,
  summandBytes,
  type AdamOptions,
  type ElementRange,
  type GradientSummand,
  type MomentumOptions,
  type SummandBytes,
} from "@distributed-ps/common/kernels/simd.ts";

export type StepJob =
  | { kind: "sgd"; param: Float32Array; grads: readonly GradientSummand[]; lr: number; scale: number; weightDecay: number }
  | { kind: "momentum"; param: Float32Array; grads: readonly GradientSummand[]; velocity: Float32Array; options: MomentumOptions }
  | { kind: "adam"; param: Float32Array; grads: readonly GradientSummand[]; m: Float32Array; v: Float32Array; options: AdamOptions };

/** Runs elements `range` of the job (all of them by default). */
export function runStepJob(job: StepJob, range?: ElementRange): void {
  switch (job.kind) {
    case "sgd":
      return sgdStep(job.param, job.grads, job.lr, job.scale, job.weightDecay, range);
    case "momentum":
      return momentumStep(job.param, job.grads, job.velocity, job.options, range);
    case "adam":
      return adamStep(job.param, job.grads, job.m, job.v, job.options, range);
  }
}

/**
 * A job as postMessage carries it: every summand as its bytes and their format (summandBytes), and
 * every array a view of shared memory, so nothing is copied.
 */
export type WireStepJob = StepJob extends infer J ? (J extends StepJob ? Omit<J, "grads"> & { grads: SummandBytes[] } : never) : never;

/**
 * Whether every array the job touches lives in shared memory, so that another thread can run part
 * of it in place. Memory that is not shared would be copied by postMessage, and the copy's updates lost.
 */
export function isShared(job: StepJob): boolean {
  const arrays: (Float32Array | Uint8Array)[] = [job.param, ...summandBytes(job.grads).map((g) => g.bytes)];
  if (job.kind === "momentum") arrays.push(job.velocity);
  if (job.kind === "adam") arrays.push(job.m, job.v);
  return arrays.every((a) => a.buffer instanceof SharedArrayBuffer);
}

export function toWire(job: StepJob): WireStepJob {
  return { ...job, grads: summandBytes(job.grads) };
}

export function fromWire(job: WireStepJob): StepJob {
  return { ...job, grads: job.grads.map((g) => EncodedValues.received(g.format, g.bytes)) };
}
