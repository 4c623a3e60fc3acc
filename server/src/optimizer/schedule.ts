/**
 * Learning-rate schedules, as a function of the number of updates already applied (0 for the first
 * update). An optional linear warm-up from lr/warmup to lr precedes any of them.
 */
export type ScheduleKind = "constant" | "step" | "cosine";

export interface ScheduleOptions {
  kind: ScheduleKind;
  /** Base learning rate. */
  lr: number;
  /** step: multiply by gamma every stepSize updates. */
  stepSize: number;
  gamma: number;
  /** cosine: anneal from lr to minLr over decaySteps updates, then stay at minLr. */
  decaySteps: number;
  minLr: number;
  /** Updates of linear warm-up before the schedule starts (0 for none). */
  warmupSteps: number;
}

export type Schedule = (updatesApplied: number) => number;

export function createSchedule(o: ScheduleOptions): Schedule {
  const after = (t: number): number => {
    switch (o.kind) {
      case "constant":
        return o.lr;
      case "step":
        return o.lr * o.gamma ** Math.floor(t / o.stepSize);
      case "cosine": {
        const progress = Math.min(t, o.decaySteps) / o.decaySteps;
        return o.minLr + 0.5 * (o.lr - o.minLr) * (1 + Math.cos(Math.PI * progress));
      }
    }
  };
  return (t) => (t < o.warmupSteps ? (o.lr * (t + 1)) / o.warmupSteps : after(t - o.warmupSteps));
}
