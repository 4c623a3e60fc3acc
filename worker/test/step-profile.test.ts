/** The step profile: time between marks goes to the phase named, reported as a mean per step. */
import t from "tap";
import { StepProfile } from "../src/step-profile.ts";

t.test("marks divide the time between them among the phases; restart drops a gap; per step is the mean", async (t) => {
  let clock = 1000;
  const p = new StepProfile(() => clock);
  for (let step = 0; step < 2; step++) {
    clock += 1; // assignment, progress
    p.mark("other");
    clock += 4;
    p.mark("pull");
    clock += 0.5;
    p.mark("set_parameters");
    clock += 0.25;
    p.mark("batch");
    clock += 3;
    p.mark("compute");
    clock += 6;
    p.mark("push");
    p.step();
  }
  clock += 500; // an evaluation
  p.restart();
  t.same(p.perStep(), { pull: 4, set_parameters: 0.5, batch: 0.25, compute: 3, push: 6, other: 1, total: 14.75 }, "milliseconds per step, phase by phase");
  t.equal(p.describe(), "pull 4.00, set_parameters 0.50, batch 0.25, compute 3.00, push 6.00, other 1.00 = 14.75 ms per step");
  clock += 2;
  p.mark("other");
  t.equal(p.perStep().other, 2, "the evaluation before restart() is not counted; what follows it is");
});

t.test("no steps: zeros, not a division by zero", async (t) => {
  t.same(new StepProfile(() => 0).perStep(), { pull: 0, set_parameters: 0, batch: 0, compute: 0, push: 0, other: 0, total: 0 });
});
