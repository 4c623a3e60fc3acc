/**
 * Sharded servers against real servers on loopback: the shard map from registration, the same slot
 * on every shard, each shard holding its part of the tensors, pulls merged and pushes split, a push
 * that some shards refuse retried on those only, the barrier's slot-ordered sum, and the
 * configuration's checks.
 */
import t from "tap";
import { Code, ConnectError } from "@connectrpc/connect";
import { ConfigError, parseEnv } from "@distributed-ps/common/env.ts";
import { shardOfTensor } from "@distributed-ps/common/shard-partition.ts";
import { serverEnvSchema } from "../../server/src/config.ts";
import type { MutableSlot } from "../../server/src/run/slot.ts";
import { connectToServer } from "@distributed-ps/common/wire/client.ts";
import { nextVersions, WorkerConnection } from "../../worker/src/connection/worker-connection.ts";
import { ShardedConnection } from "../../worker/src/connection/sharded-connection.ts";
import { connectWorker, ensureParameters, parameterBytes, shardTestGradient, shardTestModel, startShards } from "../helpers/shards.ts";
import { atBarrier, startTestServer, values, workersWithParameters } from "../helpers/test-server.ts";

const errorOf = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => ConnectError.from(e));

t.test("SHARD_INDEX and SHARD_ADDRESSES are checked together", async (t) => {
  const ok = parseEnv(serverEnvSchema, { SHARD_INDEX: "1", SHARD_ADDRESSES: "ps-0:8000, ps-1:8000" });
  t.same(ok.SHARD_ADDRESSES, ["ps-0:8000", "ps-1:8000"], "the list is split on commas and trimmed");
  t.same(parseEnv(serverEnvSchema, {}).SHARD_ADDRESSES, undefined, "unset: this server is the only shard");
  t.throws(() => parseEnv(serverEnvSchema, { SHARD_INDEX: "2", SHARD_ADDRESSES: "a:1,b:2" }), /SHARD_INDEX="2": must be below the number of SHARD_ADDRESSES \(2\)/);
  t.throws(() => parseEnv(serverEnvSchema, { SHARD_INDEX: "1" }), ConfigError, "an index without the list is refused");
  t.throws(() => parseEnv(serverEnvSchema, { SHARD_ADDRESSES: "a:1,nonsense" }), /SHARD_ADDRESSES="a:1,nonsense": accepts comma-separated host:port/);
});

t.test("two shards: one slot everywhere, each shard its part, pulls merged, pushes split", async (t) => {
  const shards = await startShards(t, 2, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync", LEARNING_RATE: "0.5" });
  const a = await connectWorker(shards.addresses, { label: "a" });
  const b = await connectWorker(shards.addresses, { label: "b" });
  t.ok(a instanceof ShardedConnection && b instanceof ShardedConnection, "a run listing two shards gives sharded connections");
  t.same(a.config.shards.map((s) => s.address), shards.addresses, "registration lists every shard's address in order");
  t.same([a.slot, b.slot], [0, 1], "shard 0 handed out slots 0 and 1");
  for (const [k, server] of shards.servers.entries()) {
    t.same(server.run.membership.slots.map((s) => s.label), ["a", "b"], `shard ${k} has each worker in the same slot`);
  }

  const model = shardTestModel();
  await Promise.all([ensureParameters(a, model), ensureParameters(b, model)]);
  const owner = shardOfTensor(model, 2);
  for (const [k, server] of shards.servers.entries()) {
    const held = server.run.store.layout().map((l) => l.name).sort();
    t.same(held, model.filter((m) => owner.get(m.name) === k).map((m) => m.name).sort(), `shard ${k} holds exactly its part of the partition`);
  }
  t.ok(shards.servers.every((s) => s.run.store.tensorCount > 0), "neither shard is empty");

  const pulled = await a.pull();
  t.same(pulled.tensors.map((x) => x.name).sort(), model.map((m) => m.name).sort(), "a pull merges every shard's tensors");
  t.same(values(pulled.tensors), values(model), "with the values the initialiser uploaded");
  t.same(pulled.bases, [0, 0], "and carries each shard's version");

  const pb = await b.pull();
  await Promise.all([
    a.push(shardTestGradient(0, 0), pulled.version, { exampleCount: 1, position: { epoch: 0, batch: 1 }, bases: pulled.bases }),
    b.push(shardTestGradient(0, 1), pb.version, { exampleCount: 1, position: { epoch: 0, batch: 1 }, bases: pb.bases }),
  ]);
  t.same(shards.servers.map((s) => s.run.store.version), [1, 1], "each shard's barrier completed step 0");
  t.same(shards.servers.map((s) => s.run.membership.slots.map((x) => x.pushes)), [[1, 1], [1, 1]], "each shard counted one gradient per worker");

  // The same two gradients on one unsharded server give the same bits.
  const single = await startShards(t, 1, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync", LEARNING_RATE: "0.5" });
  const c = await connectWorker(single.addresses);
  const d = await connectWorker(single.addresses);
  t.ok(c instanceof WorkerConnection, "one shard: a plain connection");
  await Promise.all([ensureParameters(c, model), ensureParameters(d, model)]);
  await Promise.all([c.push(shardTestGradient(0, 0), 0, { exampleCount: 1 }), d.push(shardTestGradient(0, 1), 0, { exampleCount: 1 })]);
  t.same(await parameterBytes(a), await parameterBytes(c), "after one step the sharded parameters equal the unsharded ones bit for bit");

  await b.reportMetrics({ epoch: 0, trainLoss: 1.5 });
  t.equal(shards.servers[0]!.run.membership.slots[1]!.latestMetrics?.trainLoss, 1.5, "metrics go to shard 0");
  t.equal(shards.servers[1]!.run.membership.slots[1]!.latestMetrics, undefined, "and to no other shard");
  t.equal(await a.finish({}), false, "finishing one worker does not complete the run");
  t.equal(await b.finish({}), true, "the last one completes it on shard 0");
  t.ok(shards.servers.every((s) => s.run.complete), "and on every shard");
});

t.test("a push some shards refuse is retried on those shards only", async (t) => {
  // Shard 1 has a short straggler bound, so it applies step 0 without worker b while shard 0 waits.
  const shards = await startShards(t, 2, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync" }, { 1: { SYNC_TIMEOUT_MS: "200" } });
  const a = await connectWorker(shards.addresses, { label: "a" });
  const b = await connectWorker(shards.addresses, { label: "b" });
  await Promise.all([ensureParameters(a, shardTestModel()), ensureParameters(b, shardTestModel())]);
  const [shard0, shard1] = shards.servers.map((s) => s.run);
  const pa = await a.pull();
  const pb = await b.pull();
  const pushA = a.push(shardTestGradient(0, 0), pa.version, { exampleCount: 1, position: { epoch: 0, batch: 1 }, bases: pa.bases });
  await shard1!.changed.until(() => shard1!.store.version === 1, 5_000);
  t.equal(shard0!.store.version, 0, "shard 1 applied step 0 on its timeout; shard 0 still waits for b");

  const refused = await errorOf(b.push(shardTestGradient(0, 1), pb.version, { exampleCount: 1, position: { epoch: 0, batch: 1 }, bases: pb.bases }));
  t.equal(refused?.code, Code.Aborted, "b's push is refused (by shard 1: its step 0 is gone)");
  t.equal((await pushA).version, 1, "shard 0 took b's part and completed step 0, releasing a's push");
  t.same([shard0!.membership.slots[1]!.pushes, shard1!.membership.slots[1]!.pushes], [1, 0], "b's gradient counted on shard 0 only");

  // The training loop's retry: fresh parameters (each shard's next version), the same batch.
  const again = await b.pull(nextVersions(pb));
  t.same(again.bases, [1, 1], "the retry pulls each shard's next version");
  const r = await b.push(shardTestGradient(0, 2), again.version, { exampleCount: 1, position: { epoch: 0, batch: 1 }, bases: again.bases });
  t.equal(r.version, 1, "the retry answers with shard 0's result for that batch");
  t.same([shard0!.membership.slots[1]!.pushes, shard1!.membership.slots[1]!.pushes], [1, 1], "the batch now counts once on each shard: shard 0 was not sent it again");
  t.same([shard0!.store.version, shard1!.store.version], [1, 2], "shard 0 opened no step for it; shard 1 applied it");
});

t.test("a worker holds the same slot on every shard, and keeps working sessions when it joins again", async (t) => {
  const shards = await startShards(t, 2, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync" });
  const a = (await connectWorker(shards.addresses, { label: "a", preferredSlot: 1 })) as ShardedConnection;
  t.same(a.shards.map((s) => s.slot), [1, 1], "the slot shard 0 gave (1, as asked) is the slot on shard 1");

  // Another registration may not take a slot held on shard 1 when it must have exactly that one.
  const client = connectToServer(shards.addresses[1]!);
  const held = await errorOf(client.register({ preferredSlot: 1, jobFingerprint: "shard-test", workerLabel: "x", requirePreferredSlot: true }));
  t.equal(held?.code, Code.ResourceExhausted, "require_preferred_slot on a held slot: ResourceExhausted (retried until the lease runs out)");
  t.match(held?.rawMessage ?? "", /slot 1 is held by a live lease on this shard/, "naming the slot");
  const any = await client.register({ preferredSlot: 1, jobFingerprint: "shard-test", workerLabel: "y" });
  t.equal(any.session?.slot, 0, "without it, another free slot is handed out as before");
  const none = await errorOf(client.register({ preferredSlot: -1, jobFingerprint: "shard-test", workerLabel: "z", requirePreferredSlot: true }));
  t.equal(none?.code, Code.InvalidArgument, "require_preferred_slot without a preferred slot is InvalidArgument");

  // Shard 1 loses a's session (its lease ran out); shard 0 still has it. Joining again keeps shard
  // 0's session and registers with shard 1 for the same slot.
  // (Set by hand, as only Membership may: a lease run out, a position reached.)
  (shards.servers[1]!.run.membership.slots[1] as MutableSlot).leaseExpiresAt = 0;
  shards.servers[1]!.run.membership.sweep();
  (shards.servers[0]!.run.membership.slots[1] as MutableSlot).position = { epoch: 2, batch: 7 };
  const again = (await connectWorker(shards.addresses, { label: "a", previous: a })) as ShardedConnection;
  t.equal(again.shards[0], a.shards[0], "shard 0's session still worked and was kept");
  t.not(again.shards[1], a.shards[1], "shard 1 was registered with again");
  t.same(again.shards.map((s) => s.slot), [1, 1], "for the same slot");
  t.same([again.resumeFrom?.epoch, again.resumeFrom?.batch], [2, 7], "the data position comes from shard 0's slot");
  t.equal(shards.servers[1]!.run.membership.slots[1]!.registrations, 2, "shard 1 saw a second registration of slot 1");
});

t.test("sync barrier: gradients are summed in slot order, whatever order they arrive in", async (t) => {
  // In float32, (2^25 + 1) - 2^25 = 0 but (2^25 - 2^25) + 1 = 1: the order of the sum shows.
  const big = 2 ** 25;
  const grads = [big, 1, -big];
  const results: number[] = [];
  for (const order of [[0, 1, 2], [0, 2, 1], [2, 1, 0], [1, 2, 0]]) {
    const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "3", SERVER_MODE: "sync", LEARNING_RATE: "1" });
    const workers = await workersWithParameters(ts, 3);
    const pushes: Promise<unknown>[] = [];
    for (const slot of order) {
      const g = [
        { name: "w", shape: [2, 2], data: new Float32Array(4).fill(grads[slot]!) },
        { name: "b", shape: [2], data: new Float32Array(2).fill(grads[slot]!) },
      ];
      pushes.push(workers[slot]!.push(g, 0, { exampleCount: 1 }));
      // The next gradient is sent only once this one is at the barrier (the last one completes the step).
      if (slot !== order.at(-1)) await atBarrier(ts, slot);
    }
    await Promise.all(pushes);
    const w = values((await workers[0]!.pull()).tensors).w!;
    results.push(w[0]!);
    t.equal(w[0], 1 - 0 / 3, `arrival order ${order.join(",")}: the update is ((g0 + g1) + g2) / 3 = 0, so w[0] stays 1`);
  }
  t.equal(new Set(results).size, 1, "every arrival order gave the same bits");
});
