/**
 * No run waits for a slot that nobody will fill, against a real server over gRPC with hand-driven
 * workers: a worker whose own parts are trained stays (NextAssignment says wait, not done) while
 * another part is untrained, and takes it over once that part's worker is gone for good — after a
 * server restart that left a slot's worker behind, or after a retired worker was stopped instead
 * of finishing. Only then are the workers told every part is trained, and the run completes.
 */
import t, { type Test } from "tap";
import type { Assignment, WorkerConnection } from "../../worker/src/connection/worker-connection.ts";
import { gradient, settledWithin, startTestServer, workersWithParameters, type TestServer } from "../helpers/test-server.ts";

type Train = Extract<Assignment, { kind: "train" }>;

function train(a: Assignment): Train {
  if (a.kind !== "train") throw new Error(`expected a part to train, got ${a.kind}`);
  return a;
}

/** Pushes the gradients for batches from..to of the worker's part (async: each applied on arrival). */
async function pushBatches(w: WorkerConnection, a: Train, from: number, to: number, batches: number): Promise<void> {
  for (let batch = from; batch <= to; batch++) {
    const version = (await w.pull()).version;
    await w.push(gradient(0.01), version, { exampleCount: 32, position: { epoch: a.epoch, batch, part: a.part, batches } });
  }
}

/** Keeps `w`'s lease alive, as a worker process's heartbeat would, until the test ends or stop() is called. */
function keepAlive(t: Test, w: WorkerConnection): () => void {
  const timer = setInterval(() => void w.heartbeat().catch(() => {}), 50);
  t.teardown(() => clearInterval(timer));
  return () => clearInterval(timer);
}

const FAST = { SERVER_MODE: "async", LEASE_MS: "300", REPLACEMENT_GRACE_MS: "200", WAIT_TIMEOUT_MS: "5000" };

/** A server checkpointing into the test's directory (on demand only), and three workers with their parts of epoch 1. */
async function threeWorkersWithParts(t: Test) {
  const env = { ...FAST, TOTAL_WORKERS_EXPECTED: "3", CHECKPOINT_URI: `${t.testdir()}/ckpt`, CHECKPOINT_EVERY_STEPS: "0", CHECKPOINT_EVERY_SECONDS: "0" };
  const first = await startTestServer(t, env);
  const [a, b, c] = await workersWithParameters(first, 3);
  const workers = [a!, b!, c!] as const;
  const parts: Train[] = [];
  for (const w of workers) parts.push(train(await w.nextAssignment(1)));
  return { env, first, workers, parts };
}

/** Checkpoints `first` and stops it, starts the server again on that checkpoint, and re-registers slots 0 and 1 (kept alive). */
async function restartedWithTwo(t: Test, first: TestServer, env: Record<string, string>) {
  await first.server.checkpointer!.save("test");
  await first.server.checkpointer!.close();
  await first.server.close();
  const second = await startTestServer(t, env);
  const [a2, b2] = [await second.register("a again", 0), await second.register("b again", 1)];
  for (const w of [a2, b2]) keepAlive(t, w);
  return { second, a2, b2 };
}

t.test("restarted with a slot whose worker already left: the others take over its rest, then the run completes", async (t) => {
  const { env, first, workers: [a, b, c], parts } = await threeWorkersWithParts(t);
  await pushBatches(a, parts[0]!, 1, 2, 2);
  await pushBatches(b, parts[1]!, 1, 2, 2);
  await pushBatches(c, parts[2]!, 1, 1, 3); // slot 2's worker gets 1 of its 3 batches in, then is gone
  const { second, a2, b2 } = await restartedWithTwo(t, first, env);
  const asks = [a2.nextAssignment(1), b2.nextAssignment(1)];
  t.same(await settledWithin(Promise.race(asks), 100), "pending", "slots 0 and 1 are not told 'done' while slot 2's part is untrained");
  // After a lease plus the grace from the restart, slot 2 is given up and its rest goes to one of them.
  const first2 = await Promise.race(asks.map((p, i) => p.then((r) => ({ r, i }))));
  const taker = [a2, b2][first2.i]!;
  const rest = train(first2.r);
  t.same([rest.epoch, rest.part, rest.firstBatch, rest.plannedSlot], [0, 2, 1, 2], `slot ${taker.slot} takes over slot 2's part from batch 1`);
  t.ok(second.logs.some((l) => /slot 2: no replacement within 200 ms \(REPLACEMENT_GRACE_MS\); its data goes to the other workers/.test(l)), "the server said why");
  await pushBatches(taker, rest, 2, 3, 3);
  const other = await asks[1 - first2.i]!;
  t.equal(other.kind, "done", "the worker that waited is told 'done' once the last part is trained");
  t.equal((await taker.nextAssignment(1)).kind, "done", "and so is the one that trained it");
  t.notOk(second.server.run.complete, "not complete while both workers are still live");
  await a2.finish({});
  await b2.finish({});
  t.ok(second.server.run.complete, "complete once they finished: slot 2 is not waited for");
  const examples = second.server.run.plan.summary().map((e) => e.examples);
  t.same(examples, [7 * 32], "epoch 1: 2 + 2 + 3 batches, each counted once");
  await second.server.checkpointer!.close(); // the checkpoints written as they finished
});

t.test("async scale-down after the others finished their parts, the retired worker stopped: its rest is trained", async (t) => {
  const ts = await startTestServer(t, { ...FAST, TOTAL_WORKERS_EXPECTED: "3" });
  const [a, b, c] = await workersWithParameters(ts, 3);
  const stopC = keepAlive(t, c!);
  for (const w of [a!, b!]) keepAlive(t, w);
  const parts = [train(await a!.nextAssignment(1)), train(await b!.nextAssignment(1)), train(await c!.nextAssignment(1))];
  await pushBatches(a!, parts[0]!, 1, 2, 2);
  await pushBatches(b!, parts[1]!, 1, 2, 2);
  await pushBatches(c!, parts[2]!, 1, 1, 2);
  const asks = [a!.nextAssignment(1), b!.nextAssignment(1)];
  t.same(await settledWithin(Promise.race(asks), 100), "pending", "their own parts trained, slots 0 and 1 wait instead of finishing");

  t.same(ts.server.run.resize(2).retired, [2], "the count goes down to 2: slot 2, which is live, is retired");
  stopC(); // ECS stops its task rather than let it finish its part
  const first2 = await Promise.race(asks.map((p, i) => p.then((r) => ({ r, i }))));
  const taker = [a!, b!][first2.i]!;
  const rest = train(first2.r);
  t.same([rest.part, rest.firstBatch, rest.plannedSlot], [2, 1, 2], `slot ${taker.slot} takes over the rest of the retired slot's part`);
  await pushBatches(taker, rest, 2, 2, 2);
  t.equal((await asks[1 - first2.i]!).kind, "done", "the other one is then told 'done'");
  t.equal((await taker.nextAssignment(1)).kind, "done", "and so is the taker");
  await a!.finish({});
  await b!.finish({});
  t.ok(ts.server.run.complete, "the run is complete");
  t.same(ts.server.run.plan.summary().map((e) => e.examples), [6 * 32], "every batch of the epoch counted once");
});

t.test("restarted while a retired slot's worker was finishing its part: the part goes to the others", async (t) => {
  const { env, first, workers: [, , c], parts } = await threeWorkersWithParts(t);
  await pushBatches(c, parts[2]!, 1, 1, 3);
  t.same(first.server.run.resize(2).retired, [2], "slot 2 retired while its worker trains its part (1 of 3 batches in)");
  const { second, a2, b2 } = await restartedWithTwo(t, first, env);
  await pushBatches(a2, train(await a2.nextAssignment(1)), 1, 2, 2);
  const rest = train(await a2.nextAssignment(1));
  t.same([rest.part, rest.firstBatch, rest.plannedSlot], [2, 1, 2], "slot 0, done with its own part, takes over the retired slot's rest at once");
  await pushBatches(b2, train(await b2.nextAssignment(1)), 1, 2, 2);
  await pushBatches(a2, rest, 2, 3, 3);
  t.same([(await a2.nextAssignment(1)).kind, (await b2.nextAssignment(1)).kind], ["done", "done"], "then every part is trained");
  t.same(second.server.run.plan.summary().map((e) => e.examples), [7 * 32], "each batch counted once");
  await second.server.checkpointer!.close();
});
