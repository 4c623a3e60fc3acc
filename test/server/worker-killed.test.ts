/**
 * A worker process killed with SIGKILL mid-step does not stop the others: the step completes once
 * its lease runs out, and a replacement process takes the same slot.
 */
import t, { type Test } from "tap";
import { once } from "node:events";
import { startNode } from "../helpers/processes.ts";
import { settledWithin, startTestServer } from "../helpers/test-server.ts";

/** The fixture worker (test/fixtures/stuck-worker.ts): registers, then never pushes. */
function startStuckWorker(t: Test, address: string) {
  const p = startNode(t, "test/fixtures/stuck-worker.ts", { args: [address] });
  const slot = p.waitFor(/^REGISTERED \d+$/, 30_000).then((line) => Number(line.split(" ")[1]));
  return { child: p.child, slot };
}

t.test("SIGKILL mid-step: the step completes after the lease, and the replacement gets the same slot", async (t) => {
  const LEASE_MS = 800;
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync", LEASE_MS: String(LEASE_MS), LEARNING_RATE: "1" });
  const a = await ts.register("in-process");
  await a.waitForParameters();
  await a.initParameters([{ name: "w", shape: [1], data: new Float32Array([10]) }]);
  const hb = setInterval(() => void a.heartbeat().catch(() => {}), 100);
  t.teardown(() => clearInterval(hb));

  const stuck = startStuckWorker(t, ts.address);
  const stuckSlot = await stuck.slot;
  t.equal(stuckSlot, 1, "the child process holds slot 1");

  const push = a.push([{ name: "w", shape: [1], data: new Float32Array([2]) }], 0, { exampleCount: 1 });
  t.equal(await settledWithin(push, 300), "pending", "the barrier waits for the live child");

  const killedAt = Date.now();
  stuck.child.kill("SIGKILL");
  await once(stuck.child, "exit");
  const r = await settledWithin(push, LEASE_MS * 5);
  t.not(r, "pending", "the push completed after the dead worker's lease ran out");
  if (r === "pending") return;
  const waited = Date.now() - killedAt;
  t.ok(waited >= LEASE_MS * 0.5, `it waited for the lease (${waited} ms), not less`);
  t.equal(r.contributors, 1, "the step was applied with the one live worker's gradient");
  t.same(Array.from((await a.pull()).tensors[0]!.data), [8], "w = 10 − 1·2");
  t.ok(ts.logs.some((l) => /slot 1: lease expired/.test(l)), "the server logged the expiry");

  const replacement = startStuckWorker(t, ts.address);
  t.equal(await replacement.slot, 1, "the replacement process takes slot 1 again");
  const slot1 = ts.server.run.membership.slots[1]!;
  t.equal(slot1.registrations, 2, "slot 1 has been registered twice");
  t.equal(ts.server.run.membership.slots.length, 2, "slot ids did not grow");

  // The replacement is part of the barrier again: the next step waits for it.
  const next = a.push([{ name: "w", shape: [1], data: new Float32Array([1]) }], 1, { exampleCount: 1 });
  t.equal(await settledWithin(next, 300), "pending", "the next step waits for the replacement");
  replacement.child.kill("SIGKILL");
  t.not(await settledWithin(next, LEASE_MS * 5), "pending", "and completes once the replacement is gone too");
});
