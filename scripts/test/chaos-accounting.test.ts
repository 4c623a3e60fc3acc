/**
 * The chaos suite's accounting check (scripts/lib/chaos/accounting.ts) on server summaries: a
 * complete, exact run passes in every mode, and one gradient too many, an epoch short, a part not
 * finished, counters that disagree or a forgotten resize are each rejected with a reason; and a
 * summary printed mid-run (a server stopped with SIGTERM) must be consistent.
 * Pure: no processes.
 */
import t from "tap";
import { checkAccounting, checkConsistency, compareSummaries, type Expected } from "../lib/chaos/accounting.ts";
import type { Mode } from "../lib/chaos/plan.ts";
import { expectedWorkerCount } from "../lib/chaos/run.ts";

const EPOCHS = 4;
const TRAIN = 19_200;
const BATCH = 32;
const TOTAL = (EPOCHS * TRAIN) / BATCH; // 2400

const expected = (mode: Mode, o: Partial<Expected> = {}): Expected => ({ mode, epochs: EPOCHS, trainExamples: TRAIN, batchSize: BATCH, maxSlots: 3, finalWorkerCount: 3, ...o });

/** The METRICS_JSON of an exact run with 3 slots, as server/src/observability/status-reporter.ts writes it. */
function exactSummary(mode: Mode) {
  const updates = mode === "sync" ? TOTAL / 3 : TOTAL;
  return {
    role: "server",
    mode,
    total_workers: 3,
    version: updates,
    updates_applied: updates,
    registrations: [1, 2, 1],
    gradients_per_slot: [TOTAL / 3, TOTAL / 3, TOTAL / 3],
    retired_slots: [],
    epochs: Array.from({ length: EPOCHS }, (_, epoch) => ({ epoch, parts: 3, parts_complete: 3, examples: TRAIN })),
    run_complete: true,
  };
}

for (const mode of ["sync", "async", "ssp"] as const) {
  t.test(`${mode}: an exact run passes`, async (t) => {
    t.same(checkAccounting(exactSummary(mode), expected(mode)), [], "no problem");
  });

  t.test(`${mode}: one gradient too many is rejected`, async (t) => {
    const s = exactSummary(mode);
    s.gradients_per_slot[1]! += 1;
    if (mode !== "sync") {
      s.updates_applied += 1;
      s.version += 1;
    }
    const problems = checkAccounting(s, expected(mode));
    t.match(problems, [/sum\(gradients_per_slot\) = 2401 \[800, 801, 800\], expected 2400/], "the gradient sum names the extra gradient");
  });

  t.test(`${mode}: an epoch one batch short is rejected`, async (t) => {
    const s = exactSummary(mode);
    s.epochs[2]!.examples -= BATCH;
    t.match(checkAccounting(s, expected(mode)), [/epoch 3 counted 19168 examples, expected 19200/], "the short epoch is named");
  });
}

t.test("a missing epoch, an unfinished part, an incomplete run", async (t) => {
  const s = exactSummary("async");
  s.epochs.pop();
  t.match(checkAccounting(s, expected("async")), [/3 epochs recorded, expected 4/]);
  const p = exactSummary("async");
  p.epochs[0]!.parts_complete = 2;
  t.match(checkAccounting(p, expected("async")), [/epoch 1: 2 of 3 parts complete/]);
  const c = exactSummary("sync");
  c.run_complete = false;
  t.match(checkAccounting(c, expected("sync")), [/run_complete is false/]);
});

t.test("counters that disagree", async (t) => {
  const a = exactSummary("async");
  a.updates_applied -= 1;
  a.version -= 1;
  t.match(checkAccounting(a, expected("async")), [/async: updates_applied = 2399, but sum\(gradients_per_slot\) = 2400/], "async: an update per gradient");
  const v = exactSummary("sync");
  v.version += 1;
  t.match(checkAccounting(v, expected("sync")), [/version 801 != updates_applied 800/], "sync: a version per update");
  const few = exactSummary("sync");
  few.updates_applied = few.version = 700;
  t.match(checkAccounting(few, expected("sync")), [/sync: 700 updates for 2400 gradients over 3 slots/], "sync: no step averages more than one gradient per slot");
});

t.test("slots beyond the largest count, and a resize a restart forgot", async (t) => {
  const s = exactSummary("ssp");
  s.gradients_per_slot = [600, 600, 600, 600];
  s.registrations = [1, 1, 1, 1];
  t.match(checkAccounting(s, expected("ssp")), [/4 slots, more than the 3 the run ever had/]);
  t.same(checkAccounting(s, expected("ssp", { maxSlots: 5, finalWorkerCount: 3 })), [], "fine after a scale-up to 5");
  t.match(checkAccounting(exactSummary("ssp"), expected("ssp", { maxSlots: 5, finalWorkerCount: 2 })), [/total_workers 3, expected 2/]);
});

t.test("a record that is not a summary", async (t) => {
  t.match(checkAccounting(undefined, expected("sync")), [/METRICS_JSON is not a summary/]);
  t.match(checkAccounting({ ...exactSummary("sync"), epochs: "many" }, expected("sync")), [/not a summary: epochs/]);
});

t.test("a server restarted on the completed run must report the same state", async (t) => {
  const done = exactSummary("async");
  t.same(compareSummaries(done, { ...done, wall_time_s: 3 }), [], "the same counts pass");
  t.match(compareSummaries(done, { ...done, gradients_per_slot: [800, 801, 800] }), [/gradients_per_slot is \[800,801,800\], was \[800,800,800\]/]);
});

t.test("mid-run (a server stopped with SIGTERM): a consistent state passes, a gradient counted but not applied does not", async (t) => {
  const midRun = (mode: "sync" | "async") => ({
    ...exactSummary(mode),
    run_complete: false,
    version: mode === "sync" ? 49 : 146,
    updates_applied: mode === "sync" ? 49 : 146,
    gradients_per_slot: [49, 50, 47],
    epochs: [{ epoch: 0, parts: 3, parts_complete: 0, examples: 146 * BATCH }],
  });
  t.same(checkConsistency(midRun("async"), "async", BATCH), [], "async: 146 gradients, 146 updates, 146 × 32 examples");
  t.same(checkConsistency(midRun("sync"), "sync", BATCH), [], "sync: 146 gradients in 49 steps of at most 3");
  const over = midRun("async");
  over.gradients_per_slot = [50, 50, 47];
  t.match(
    checkConsistency(over, "async", BATCH),
    [/async: updates_applied = 146, but sum\(gradients_per_slot\) = 147 \[50, 50, 47\]/, /the epochs count 4672 examples, but 147 gradients of 32 were applied \(4704\)/],
    "a slot's gradient counted one too many shows twice",
  );
});

t.test("the worker count a run must end with: the count set last, or that of a checkpoint a restart fell back to", async (t) => {
  const server = (startedAtMs: number, lines: string[]) => ({ startedAtMs, lastLine: (re: RegExp) => [...lines].reverse().find((l) => re.test(l)) });
  const resumed = "INFO  [server] resumed from checkpoint ckpt-0000000425.safetensors: version 425, 425 updates applied, 4 workers; slots 0:epoch 3 batch 75";
  const skipped = ["WARN  [server] checkpoint /r/checkpoints/ckpt-0000000450.safetensors is unusable (checksum 5484… does not match the recorded 73dc…); trying the previous one", resumed];
  const first = server(0, []);
  t.equal(expectedWorkerCount([first, server(5000, skipped)], { last: 2, lastSetAtMs: 4000 }), 4, "set to 2 before a restart that fell back past a damaged checkpoint: the older checkpoint's 4");
  t.equal(expectedWorkerCount([first, server(5000, skipped)], { last: 2, lastSetAtMs: 6000 }), 2, "set after that restart: the count set");
  t.equal(expectedWorkerCount([first, server(5000, [resumed])], { last: 2, lastSetAtMs: 4000 }), 2, "a restart that skipped nothing keeps the count set (a resize is checkpointed)");
  t.equal(expectedWorkerCount([first], { last: 3, lastSetAtMs: -1 }), 3, "never set: the starting count");
});
