/**
 * Checkpoints of sharded servers: each shard writes its own tensors, and a run checkpointed with K
 * shards resumes with K' shards — the parameters, the optimizer's state (momentum), the schedule's
 * position and the data positions all carry over, so the resumed run ends bit for bit where an
 * uninterrupted one does. Also: which checkpoint set a restart picks, and what pruning keeps.
 */
import t, { type Test } from "tap";
import { readdirSync, writeFileSync } from "node:fs";
import { createLogger } from "@distributed-ps/common/log.ts";
import { listCheckpointSets, loadShardedCheckpoint } from "../../server/src/checkpoint/sharded-checkpoints.ts";
import { LocalDirectory } from "../../server/src/storage/local-directory.ts";
import { connectWorker, ensureParameters, parameterBytes, shardTestModel, startShards, trainSteps } from "../helpers/shards.ts";

const SETTINGS = {
  TOTAL_WORKERS_EXPECTED: "1",
  SERVER_MODE: "sync",
  OPTIMIZER: "momentum",
  LEARNING_RATE: "0.1",
  LR_SCHEDULE: "step",
  LR_STEP_SIZE: "4",
  LR_GAMMA: "0.5",
  CHECKPOINT_EVERY_STEPS: "0",
  CHECKPOINT_EVERY_SECONDS: "0",
};
const STEPS = [0, 1, 2, 3, 4, 5, 6, 7];
const FIRST = STEPS.slice(0, 5);
const REST = STEPS.slice(5);

/** Parameters after every step on one server, never interrupted. */
async function uninterrupted(t: Test): Promise<Record<string, string>> {
  const single = await startShards(t, 1, SETTINGS);
  const conn = await connectWorker(single.addresses);
  await ensureParameters(conn, shardTestModel());
  await trainSteps(conn, STEPS);
  return parameterBytes(conn);
}

/** Trains FIRST with `shards` servers on `dir`, checkpoints every shard, and stops them. */
async function trainAndCheckpoint(t: Test, dir: string, shards: number): Promise<void> {
  const before = await startShards(t, shards, { ...SETTINGS, CHECKPOINT_URI: dir });
  const conn = await connectWorker(before.addresses);
  await ensureParameters(conn, shardTestModel());
  await trainSteps(conn, FIRST);
  await before.close();
  for (const s of before.servers) await s.checkpointer!.save("test");
}

for (const [from, to] of [[2, 1], [1, 2], [2, 3]] as const) {
  t.test(`checkpointed with ${from} shard(s), resumed with ${to}: the run ends bit for bit where an uninterrupted one does`, async (t) => {
    const reference = await uninterrupted(t);
    const dir = t.testdir();
    await trainAndCheckpoint(t, dir, from);
    const written = readdirSync(dir).filter((f) => f.startsWith("ckpt-")).sort();
    const version = String(FIRST.length).padStart(10, "0");
    t.same(
      written,
      from === 1 ? [`ckpt-${version}.safetensors`] : Array.from({ length: from }, (_, k) => `ckpt-${version}.shard-${k}-of-${from}.safetensors`),
      `${from} shard(s) wrote ${from} file(s) named by shard`,
    );

    const after = await startShards(t, to, { ...SETTINGS, CHECKPOINT_URI: dir });
    for (const [k, s] of after.servers.entries()) {
      t.equal(s.run.store.version, FIRST.length, `shard ${k} of ${to} resumed at version ${FIRST.length}`);
      t.equal(s.run.updater.updatesApplied, FIRST.length, `shard ${k}: the schedule continues from update ${FIRST.length}`);
      t.ok(s.run.store.tensorCount > 0, `shard ${k} holds ${s.run.store.tensorCount} tensor(s)`);
    }
    t.equal(after.servers.reduce((n, s) => n + s.run.store.tensorCount, 0), shardTestModel().length, "together the shards hold every tensor once");
    t.match(after.servers[0]!.run.restoredFrom, from === 1 ? /^ckpt-\d{10}\.safetensors$/ : new RegExp(`^ckpt-\\d{10}\\.shard-\\*-of-${from}\\.safetensors$`), "the run says which set it resumed from");

    const conn = await connectWorker(after.addresses);
    t.same([conn.resumeFrom?.epoch, conn.resumeFrom?.batch], [0, FIRST.length], "the worker resumes at the data position of the old shard 0");
    await ensureParameters(conn, shardTestModel().map((x) => ({ ...x, data: new Float32Array(x.data.length) })));
    await trainSteps(conn, REST);
    t.same(await parameterBytes(conn), reference, "the parameters equal the uninterrupted run's bit for bit (momentum and schedule restored)");
  });
}

t.test("a restart takes the newest set every shard wrote, skipping incomplete and broken ones", async (t) => {
  const dir = t.testdir();
  const shards = await startShards(t, 2, { ...SETTINGS, CHECKPOINT_URI: dir, CHECKPOINT_KEEP: "1" });
  const conn = await connectWorker(shards.addresses);
  await ensureParameters(conn, shardTestModel());
  await trainSteps(conn, [0, 1]);
  for (const s of shards.servers) await s.checkpointer!.save("both");
  await trainSteps(conn, [2]);
  await shards.servers[0]!.checkpointer!.save("shard 0 only");
  await trainSteps(conn, [3]);
  await shards.servers[0]!.checkpointer!.save("shard 0 only");
  t.same(
    readdirSync(dir).filter((f) => f.includes("shard-0-of-2")).sort(),
    ["ckpt-0000000002.shard-0-of-2.safetensors", "ckpt-0000000004.shard-0-of-2.safetensors"],
    "CHECKPOINT_KEEP=1 pruned version 3 but kept version 2, the newest set shard 1 has too",
  );

  const lines: string[] = [];
  const log = createLogger("test", "info", (l) => lines.push(l));
  const root = new LocalDirectory(dir);
  const sets = await listCheckpointSets(root, 2);
  t.same(sets.map((s) => [s.version, s.keys.filter(Boolean).length]), [[4, 1], [2, 2]], "version 4 has one shard's file, version 2 both");
  const loaded = await loadShardedCheckpoint(root, { index: 0, count: 1 }, log);
  t.equal(loaded?.version, 2, "the restart takes version 2");
  t.equal(loaded?.params.length, shardTestModel().length, "as one shard it takes every tensor");
  t.match(lines.join(""), /skipping checkpoint version 4 of 2 shards: only shard\(s\) 0 wrote it/, "and says why it skipped version 4");

  // Shard 1's file of version 2 is damaged and there is nothing older: start afresh, saying why.
  writeFileSync(`${dir}/ckpt-0000000002.shard-1-of-2.safetensors`, "not a checkpoint");
  t.equal(await loadShardedCheckpoint(root, { index: 0, count: 2 }, log), undefined, "no usable set: a new run");
  t.match(lines.join(""), /ckpt-0000000002\.shard-1-of-2\.safetensors is unusable/, "the damaged file is named");
});
