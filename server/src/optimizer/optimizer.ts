/**
 * Optimizers run on the server: workers send raw gradients, the server turns them into parameter
 * updates. Each optimizer updates one tensor in place, touching each element once per step.
 *
 * Per-tensor state (momentum buffers, Adam moments) is kept as named Float32Arrays so a checkpoint
 * can store it like parameters.
 */
import type { GradientSummand } from "@distributed-ps/common/kernels/simd.ts";
import { sharedCopy, sharedFloat32 } from "../store/shared-memory.ts";
import type { StepJob } from "./step-job.ts";

export interface Optimizer {
  /** Short name for logs, e.g. "adam". */
  readonly name: string;
  /**
   * The step that updates `param` in place (run it with runStepJob, or in parts: parallel-step.ts).
   * Its state buffers are looked up (and created) now; the step itself changes nothing until run.
   * @param key identifies the tensor, so the optimizer can keep state per tensor
   * @param grads the gradient as one or more summands (float32, or kept as the wire encoded them),
   *   each as long as param, added in this order in float32 (a sync step's gradients, in slot
   *   order); not modified
   * @param lr learning rate for this step
   * @param step 1-based count of updates applied so far including this one (Adam's bias correction)
   * @param gradScale factor the summed gradient is used with (1/n to average a sum of n): applied inside the
   *   update loop rather than in a pass of its own over the gradient, which would touch every byte again
   */
  plan(key: string, param: Float32Array, grads: readonly GradientSummand[], lr: number, step: number, gradScale?: number): StepJob;
  /** Optimizer state as named tensors (for checkpoints); names are `<tensor>/<slot>`. */
  state(): Map<string, Float32Array>;
  /** Restores what state() returned (entries this optimizer does not use are ignored). */
  loadState(state: ReadonlyMap<string, Float32Array>): void;
}

/**
 * How weight decay is applied: "l2" adds decay·param to the gradient (classic SGD weight decay);
 * "decoupled" shrinks the parameter directly (AdamW), which is what Adam needs to regularise as
 * intended.
 */
export type WeightDecayStyle = "l2" | "decoupled";

/** Lazily allocated, zero-filled per-tensor buffers, in shared memory for the step's helper threads. */
export class StateBuffers {
  readonly #buffers = new Map<string, Float32Array>();
  readonly #slot: string;

  constructor(slot: string) {
    this.#slot = slot;
  }

  get(key: string, length: number): Float32Array {
    let b = this.#buffers.get(key);
    if (b === undefined) {
      b = sharedFloat32(length);
      this.#buffers.set(key, b);
    }
    return b;
  }

  addTo(out: Map<string, Float32Array>): void {
    for (const [key, b] of this.#buffers) out.set(`${key}/${this.#slot}`, b);
  }

  /** Takes the entries named `<key>/<this slot>` from a state() map (copies them). */
  loadFrom(state: ReadonlyMap<string, Float32Array>): void {
    const suffix = `/${this.#slot}`;
    for (const [name, data] of state) {
      if (name.endsWith(suffix)) this.#buffers.set(name.slice(0, -suffix.length), sharedCopy(data));
    }
  }
}
