/**
 * Where a worker's training steps spend their wall time, phase by phase, summed over the run and
 * reported per step at its end (METRICS_JSON `step_ms`, and one log line). For a small model the
 * answer is the point: its compute is a few milliseconds, and everything else is round trip.
 *
 *   pull            the parameters requested, received and decoded (in sync mode, after the
 *                   previous step: the pull waits for nothing); nothing when the previous push's
 *                   answer brought them (a model that fits in one message)
 *   set_parameters  handed to the compute engine
 *   batch           the batch gathered (and augmented)
 *   compute         forward and backward pass
 *   push            the gradient encoded, sent, and answered — in sync mode after the step's barrier,
 *                   so it includes the wait for the slowest worker — and the parameters the answer
 *                   may bring decoded
 *   other           the rest: assignments, metrics reports, progress, evaluation is not counted
 */
export type StepPhase = "pull" | "set_parameters" | "batch" | "compute" | "push" | "other";

const PHASES: readonly StepPhase[] = ["pull", "set_parameters", "batch", "compute", "push", "other"];

export class StepProfile {
  readonly #ms: Record<StepPhase, number> = { pull: 0, set_parameters: 0, batch: 0, compute: 0, push: 0, other: 0 };
  readonly #now: () => number;
  #last: number;
  #steps = 0;

  /** `now`: a millisecond clock (tests give their own). */
  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
    this.#last = now();
  }

  /** The time since the previous mark (or restart) was spent in `phase`. */
  mark(phase: StepPhase): void {
    const now = this.#now();
    this.#ms[phase] += now - this.#last;
    this.#last = now;
  }

  /** Starts timing afresh, dropping the time since the last mark (evaluation, for one). */
  restart(): void {
    this.#last = this.#now();
  }

  /** One step completed. */
  step(): void {
    this.#steps++;
  }

  /** Mean milliseconds per step in each phase, and their total. */
  perStep(): Record<StepPhase | "total", number> {
    const n = Math.max(1, this.#steps);
    const out = { total: 0 } as Record<StepPhase | "total", number>;
    for (const p of PHASES) {
      out[p] = round(this.#ms[p] / n);
      out.total += this.#ms[p] / n;
    }
    out.total = round(out.total);
    return out;
  }

  /** One line for the log: "pull 1.20 ms, compute 2.10 ms, ... = 8.90 ms per step". */
  describe(): string {
    const s = this.perStep();
    return `${PHASES.map((p) => `${p} ${s[p].toFixed(2)}`).join(", ")} = ${s.total.toFixed(2)} ms per step`;
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
