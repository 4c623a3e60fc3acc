import type { ServerEnv } from "../config.ts";
import { Adam } from "./adam.ts";
import { Momentum } from "./momentum.ts";
import type { Optimizer } from "./optimizer.ts";
import { createSchedule, type Schedule } from "./schedule.ts";
import { Sgd } from "./sgd.ts";

/** The optimizer and learning-rate schedule the configuration asks for. */
export function optimizerFromConfig(c: ServerEnv): { optimizer: Optimizer; schedule: Schedule } {
  const optimizer: Optimizer =
    c.OPTIMIZER === "adam"
      ? new Adam({ beta1: c.ADAM_BETA1, beta2: c.ADAM_BETA2, epsilon: c.ADAM_EPSILON, weightDecay: c.WEIGHT_DECAY })
      : c.OPTIMIZER === "momentum"
        ? new Momentum({ momentum: c.MOMENTUM, nesterov: c.NESTEROV, weightDecay: c.WEIGHT_DECAY })
        : new Sgd({ weightDecay: c.WEIGHT_DECAY });
  const schedule = createSchedule({
    kind: c.LR_SCHEDULE,
    lr: c.LEARNING_RATE,
    stepSize: c.LR_STEP_SIZE,
    gamma: c.LR_GAMMA,
    decaySteps: c.LR_DECAY_STEPS,
    minLr: c.LR_MIN,
    warmupSteps: c.LR_WARMUP_STEPS,
  });
  return { optimizer, schedule };
}
