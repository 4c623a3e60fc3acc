import { Adam } from "./adam.ts";
import { Momentum } from "./momentum.ts";
import type { Optimizer } from "./optimizer.ts";
import { createSchedule, type Schedule, type ScheduleOptions } from "./schedule.ts";
import { Sgd } from "./sgd.ts";

/** Which optimizer, its settings (those of other kinds are ignored), and the learning-rate schedule. */
export interface OptimizerOptions {
  kind: "sgd" | "momentum" | "adam";
  weightDecay: number;
  /** Momentum. */
  momentum: number;
  nesterov: boolean;
  /** Adam. */
  beta1: number;
  beta2: number;
  epsilon: number;
  schedule: ScheduleOptions;
}

/** The optimizer and learning-rate schedule `o` asks for. */
export function createOptimizer(o: OptimizerOptions): { optimizer: Optimizer; schedule: Schedule } {
  const optimizer: Optimizer =
    o.kind === "adam"
      ? new Adam({ beta1: o.beta1, beta2: o.beta2, epsilon: o.epsilon, weightDecay: o.weightDecay })
      : o.kind === "momentum"
        ? new Momentum({ momentum: o.momentum, nesterov: o.nesterov, weightDecay: o.weightDecay })
        : new Sgd({ weightDecay: o.weightDecay });
  return { optimizer, schedule: createSchedule(o.schedule) };
}
