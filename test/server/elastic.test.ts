/**
 * Elastic workers against a real server over gRPC: SetWorkerCount raises and lowers the number of
 * slots mid-run; NextAssignment divides each epoch's data among the slots live when it begins, keeps
 * a new worker waiting for the next boundary (without holding up the sync barrier), lets a retired
 * live worker finish its part, and hands what a retired dead one left to the others.
 */
import t, { type Test } from "tap";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectToServer } from "@distributed-ps/common/wire/client.ts";
import type { Assignment, WorkerConnection } from "../../worker/src/connection/worker-connection.ts";
import { gradient, settledWithin, startTestServer, workersWithParameters, type TestServer } from "../helpers/test-server.ts";

const EPOCHS = 2;

type Train = Extract<Assignment, { kind: "train" }>;

function train(a: Assignment): Train {
  if (a.kind !== "train") throw new Error(`expected a part to train, got ${a.kind}`);
  return a;
}

/** Pushes one sync step's gradient for batch `batch` of the worker's part (of `batches`). */
function step(w: WorkerConnection, version: number, a: Train, batch: number, batches: number) {
  const { epoch, part } = a;
  return w.push(gradient(1), version, { exampleCount: 10, position: { epoch, batch, part, batches } });
}

async function status(ts: TestServer) {
  return connectToServer(ts.address).getStatus({});
}

t.test("scaling up: the new slot waits for the epoch boundary, and no step waits for it meanwhile", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync" });
  const [a, b] = await workersWithParameters(ts, 2);
  const [pa, pb] = [train(await a!.nextAssignment(EPOCHS)), train(await b!.nextAssignment(EPOCHS))];
  t.same([pa.epoch, pa.part, pa.parts, pb.part, pb.parts], [0, 0, 2, 1, 2], "epoch 1 is cut into 2 parts, one per slot");
  await Promise.all([step(a!, 0, pa, 1, 2), step(b!, 0, pb, 1, 2)]);

  const scaled = await connectToServer(ts.address).setWorkerCount({ count: 3 });
  t.same([scaled.count, scaled.opened, scaled.retired], [3, [2], []], "SetWorkerCount 3 opens slot 2");
  const c = await ts.register("c");
  t.equal(c.slot, 2, "a new worker registers into the new slot");
  t.equal(c.config.totalWorkers, 3, "and is told the run has 3 workers");
  t.ok((await c.waitForParameters()).ready, "training is under way: the parameters are ready");
  const pending = c.nextAssignment(EPOCHS);
  t.equal(await settledWithin(pending, 300), "pending", "mid-epoch, the new worker waits for the next epoch boundary");

  const r = await Promise.all([step(a!, 1, pa, 2, 2), step(b!, 1, pb, 2, 2)]);
  t.same(
    r.map((x) => x.contributors),
    [2, 2],
    "the step was applied with the 2 training workers: it did not wait for the idle one",
  );

  const next = train(await a!.nextAssignment(EPOCHS));
  t.same([next.epoch, next.part, next.parts], [1, 0, 3], "at the boundary epoch 2 is cut into 3 parts");
  const pc = train(await pending);
  t.same([pc.epoch, pc.part, pc.parts, pc.firstBatch], [1, 2, 3, 0], "and the new worker gets part 2 of epoch 2");
  const nb = train(await b!.nextAssignment(EPOCHS));
  t.same([nb.part, nb.parts], [1, 3], "the other old worker gets part 1");

  const three = await Promise.all([step(a!, 2, next, 1, 1), step(b!, 2, nb, 1, 1), step(c, 2, pc, 1, 1)]);
  t.same(three.map((x) => x.contributors), [3, 3, 3], "from then on every step averages 3 gradients");
  for (const w of [a!, b!, c]) t.equal((await w.nextAssignment(EPOCHS)).kind, "done", `slot ${w.slot}: nothing left after ${EPOCHS} epochs`);

  const s = await status(ts);
  t.same(
    s.epochs.map((e) => [e.epoch, e.parts, e.partsComplete, Number(e.examples)]),
    [
      [0, 2, 2, 40],
      [1, 3, 3, 30],
    ],
    "status: each epoch's parts all trained, each batch counted once",
  );
});

t.test("scaling down: a live retired worker finishes its part and is told to stop", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "3", SERVER_MODE: "sync" });
  const [a, b, c] = await workersWithParameters(ts, 3);
  const parts = [train(await a!.nextAssignment(EPOCHS)), train(await b!.nextAssignment(EPOCHS)), train(await c!.nextAssignment(EPOCHS))];
  await Promise.all([step(a!, 0, parts[0]!, 1, 2), step(b!, 0, parts[1]!, 1, 2), step(c!, 0, parts[2]!, 1, 2)]);

  const scaled = await connectToServer(ts.address).setWorkerCount({ count: 2 });
  t.same([scaled.count, scaled.retired], [2, [2]], "SetWorkerCount 2 retires the highest live slot");
  const retiring = (await status(ts)).slots[2]!;
  t.ok(retiring.retiring, "status shows slot 2 as retiring");
  const r = await Promise.all([step(a!, 1, parts[0]!, 2, 2), step(b!, 1, parts[1]!, 2, 2), step(c!, 1, parts[2]!, 2, 2)]);
  t.same(r.map((x) => x.contributors), [3, 3, 3], "the retiring worker still counts in the steps of its part");
  t.equal((await c!.nextAssignment(EPOCHS)).kind, "retire", "with its part done, it is told to stop");
  await c!.finish({});

  const [na, nb] = [train(await a!.nextAssignment(EPOCHS)), train(await b!.nextAssignment(EPOCHS))];
  t.same([na.epoch, na.parts, nb.parts], [1, 2, 2], "epoch 2 is cut among the 2 remaining slots");
  const rr = await Promise.all([step(a!, 2, na, 1, 1), step(b!, 2, nb, 1, 1)]);
  t.same(rr.map((x) => x.contributors), [2, 2], "and its steps average 2 gradients");
  await assertRejects(t, connectToServer(ts.address).setWorkerCount({ count: 2000 }), Code.InvalidArgument, /outside 0\.\.1024/, "a count beyond the limit");
});

t.test("scaling down past a dead worker: the rest of its part goes to the first worker that runs out", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync", LEASE_MS: "600" });
  const [a, b] = await workersWithParameters(ts, 2);
  const [pa, pb] = [train(await a!.nextAssignment(EPOCHS)), train(await b!.nextAssignment(EPOCHS))];
  await Promise.all([step(a!, 0, pa, 1, 3), step(b!, 0, pb, 1, 3)]);
  const heartbeat = setInterval(() => void a!.heartbeat().catch(() => {}), 100); // a lives, as a worker process would
  t.teardown(() => clearInterval(heartbeat));
  // b goes silent with 1 of its 3 batches done; a's next step waits for b's lease to run out.
  const solo = await step(a!, 1, pa, 2, 3);
  t.equal(solo.contributors, 1, "after b's lease ran out the step was applied without it");
  t.equal((await status(ts)).slots[1]!.state, 1 /* FREE */, "b's slot is free, waiting for a replacement");

  const scaled = await connectToServer(ts.address).setWorkerCount({ count: 1 });
  t.same(scaled.retired, [1], "lowering the count to 1 retires the free slot, not the live one");
  await step(a!, 2, pa, 3, 3);
  const adopted = train(await a!.nextAssignment(EPOCHS));
  t.same(
    [adopted.epoch, adopted.part, adopted.parts, adopted.firstBatch, adopted.plannedSlot],
    [0, 1, 2, 1, 1],
    "a takes over the rest of b's part of epoch 1, from the batch b had reached",
  );
  await assertRejects(t, step(a!, 3, adopted, 1, 3), Code.FailedPrecondition, /already counted up to batch 1/, "a push for a batch already counted");
  await step(a!, 3, adopted, 2, 3);
  await step(a!, 4, adopted, 3, 3);
  const own = train(await a!.nextAssignment(EPOCHS));
  t.same([own.epoch, own.part, own.parts], [1, 0, 1], "then epoch 2 is cut into a single part");
  await assertRejects(t, step(a!, 5, { ...own, part: 1 }, 1, 1), Code.FailedPrecondition, /was assigned epoch 2 part 0/, "a push for a part the slot was not given");
  await step(a!, 5, own, 1, 1);
  t.equal((await a!.nextAssignment(EPOCHS)).kind, "done", "nothing is left");
  await a!.finish({});
  const s = await status(ts);
  t.same(s.epochs.map((e) => Number(e.examples)), [60, 10], "epoch 1: all 6 batches of both parts counted once; epoch 2: 1");
  t.ok(s.runComplete, "the run is complete with the retired slot's data trained");
});

t.test("SetWorkerCount is refused by a sharded server", async (t) => {
  const ts = await startTestServer(t, { SHARD_ADDRESSES: "127.0.0.1:1,127.0.0.1:2", SHARD_INDEX: "1" });
  await assertRejects(t, connectToServer(ts.address).setWorkerCount({ count: 3 }), Code.FailedPrecondition, /unsharded/, "resize on a shard");
});

async function assertRejects(t: Test, p: Promise<unknown>, code: Code, message: RegExp, what: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, ConnectError, `${what}: refused`);
  t.equal((err as ConnectError).code, code, `${what}: ${Code[code]}`);
  t.match((err as ConnectError).rawMessage, message, `${what}: says why`);
}
