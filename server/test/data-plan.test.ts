/**
 * DataPlan: who trains which part of each epoch's data, what a retired slot hands over, and what a
 * checkpoint keeps of it.
 */
import t from "tap";
import { DataPlan, planFromPositions } from "../src/run/data-plan.ts";

t.test("an epoch is cut into one part per slot; each slot holds its own", async (t) => {
  const plan = new DataPlan();
  t.equal(plan.latest, -1, "no epoch before the first");
  const parts = plan.begin(0, [0, 2, 5]);
  t.same(
    parts.map((p) => [p.index, p.parts, p.plannedSlot, p.holder]),
    [
      [0, 3, 0, 0],
      [1, 3, 2, 2],
      [2, 3, 5, 5],
    ],
    "parts 0..2 planned for and held by slots 0, 2 and 5",
  );
  t.equal(plan.heldBy(2), parts[1], "slot 2 holds part 1");
  t.equal(plan.heldBy(1), undefined, "slot 1 holds nothing");
  t.throws(() => plan.begin(0, [0]), /already has a plan/, "an epoch is planned once");
  parts[1]!.complete = true;
  plan.begin(1, [0, 2]);
  t.same([plan.heldBy(2)?.epoch, plan.heldBy(2)?.index], [1, 1], "with its epoch-1 part done, slot 2's next is its part of epoch 2");
  t.equal(plan.latest, 1, "latest epoch 1");
});

t.test("a retired slot's unfinished parts go to nobody, oldest first up for adoption", async (t) => {
  const plan = new DataPlan();
  const e0 = plan.begin(0, [0, 1]);
  const e1 = plan.begin(1, [0, 1]);
  e0[1]!.batch = 7;
  t.same(plan.release(1, e0[1]), [e1[1]], "releasing all but the part it is finishing");
  t.equal(plan.orphan(10), e1[1], "epoch 2's part is up for adoption");
  t.equal(plan.orphan(1), undefined, "but not below epoch 1 (the worker trains only one epoch)");
  t.same(plan.release(1), [e0[1]], "then the part it was finishing");
  t.equal(plan.orphan(10), e0[1], "the oldest orphan comes first");
  e0[1]!.holder = 0;
  t.equal(plan.orphan(10), e1[1], "adopted parts are no longer up for adoption");
});

t.test("trainedThrough: every part of every epoch up to the count planned and complete", async (t) => {
  const plan = new DataPlan();
  t.notOk(plan.trainedThrough(1), "nothing planned: not trained");
  const e0 = plan.begin(0, [0, 1]);
  e0[0]!.complete = true;
  t.notOk(plan.trainedThrough(1), "one part of epoch 1 still untrained");
  e0[1]!.complete = true;
  t.ok(plan.trainedThrough(1), "both parts complete: 1 epoch trained");
  t.notOk(plan.trainedThrough(2), "but epoch 2 is not even planned");
  const e1 = plan.begin(1, [0]);
  e1[0]!.complete = true;
  t.ok(plan.trainedThrough(2), "2 epochs trained");
});

t.test("a checkpoint keeps each part's applied position; restoring continues from there", async (t) => {
  const plan = new DataPlan();
  const [a, b] = plan.begin(0, [0, 1]);
  a!.batch = 5; // accepted, one still waiting in an open sync step
  a!.appliedBatch = 4;
  a!.batches = 10;
  a!.examples = 128;
  b!.batch = b!.appliedBatch = b!.batches = 10;
  b!.complete = true;
  b!.holder = undefined;
  const restored = new DataPlan();
  restored.restore(JSON.parse(JSON.stringify(plan.snapshot())));
  const [ra, rb] = restored.epoch(0)!;
  t.same([ra!.batch, ra!.appliedBatch, ra!.batches, ra!.complete, ra!.examples, ra!.holder], [4, 4, 10, false, 128, 0], "part 0 continues from its applied batch 4");
  t.same([rb!.complete, rb!.holder], [true, undefined], "part 1 stays complete");
  t.equal(restored.latest, 0, "latest epoch restored");
});

t.test("a checkpoint from before plans: one part per slot per epoch, from the slots' positions", async (t) => {
  const records = planFromPositions([
    { finished: false, position: { epoch: 1, batch: 3 } },
    { finished: false, position: { epoch: 0, batch: 9 } },
    { finished: true, position: { epoch: 1, batch: 20 } },
  ]);
  const plan = new DataPlan();
  plan.restore(records);
  t.same(
    plan.epoch(0)!.map((p) => [p.complete, p.batch]),
    [
      [true, 0],
      [false, 9],
      [true, 0],
    ],
    "epoch 1: slots 0 and 2 had finished it, slot 1 was at batch 9",
  );
  t.same(
    plan.epoch(1)!.map((p) => [p.complete, p.batch]),
    [
      [false, 3],
      [false, 0],
      [true, 0],
    ],
    "epoch 2: slot 0 at batch 3, slot 1 not started, slot 2 finished",
  );
  t.same([plan.heldBy(1)?.epoch, plan.heldBy(1)?.batch], [0, 9], "slot 1 continues its epoch-1 part at batch 9");
});

t.test("assign: a held part, else stop if retired, else an orphan, else done, else the next epoch at its boundary, else wait", async (t) => {
  const plan = new DataPlan();
  const slot = (index: number, retired = false) => ({ index, retired, part: plan.heldBy(index) });
  const members = () => [0, 1];
  const first = plan.assign(slot(0), 2, members);
  t.same([first.assignment.kind, first.begun?.map((p) => p.plannedSlot)], ["train", [0, 1]], "the first ask begins epoch 1, cut among the members");
  t.equal(plan.assign(slot(0), 2, members).begun, undefined, "asking again: the part it holds, nothing begun");
  const [p0, p1] = plan.epoch(0)!;
  t.equal(plan.assign(slot(1), 2, members).assignment.kind, "train", "slot 1 trains its own part");
  p0!.complete = true;
  p0!.holder = 0;
  t.equal(plan.assign(slot(0), 2, members).assignment.kind, "train", "slot 0, done with its part, begins epoch 2 (its boundary)");
  t.equal(plan.latest, 1, "epoch 2 planned");
  t.equal(plan.assign(slot(1, true), 2, members).assignment.kind, "train", "a retired slot still finishes the part it holds");
  plan.release(1, undefined);
  t.equal(plan.assign(slot(0), 2, members).adopted, undefined, "slot 0 goes on with the part it holds");
  const adopted = plan.assign({ index: 2, retired: false, part: undefined }, 2, members);
  t.equal(adopted.adopted, p1, "a part nobody holds is adopted by a slot that holds none, oldest first");
  t.equal(p1!.holder, 2, "and held by it");
  t.equal(plan.assign(slot(1, true), 2, members).assignment.kind, "retire", "a retired slot holding nothing stops");
  for (const [, parts] of plan.all()) for (const p of parts) p.complete = true;
  t.equal(plan.assign(slot(0), 2, members).assignment.kind, "done", "every part of every epoch trained: done");
  const fresh = new DataPlan();
  fresh.begin(0, [0, 1]);
  t.equal(fresh.assign({ index: 2, retired: false, part: undefined }, 2, () => [0, 1, 2]).assignment.kind, "wait", "a newcomer waits for the next epoch boundary");
});
