/**
 * Checkpoints against real storage: a local directory and an S3-compatible server (s3rver) on
 * loopback. A resumed run continues exactly where the checkpoint was taken — including the
 * optimizer's state — and broken checkpoints are reported and skipped.
 */
import t, { type Test } from "tap";
import { readdir, readFile, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { decodeSafetensors } from "@distributed-ps/common/safetensors.ts";
import { startS3rver } from "../helpers/s3.ts";
import { gradient, startTestServer, values, workersWithParameters } from "../helpers/test-server.ts";
import { waitUntil } from "../helpers/wait.ts";

const ADAM = { OPTIMIZER: "adam", LEARNING_RATE: "0.05", TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync", CHECKPOINT_EVERY_STEPS: "1", CHECKPOINT_EVERY_SECONDS: "0" };

/** Runs `steps` sync steps with fixed per-worker gradients that depend on the step. */
async function runSteps(ts: Awaited<ReturnType<typeof startTestServer>>, from: number, steps: number) {
  const a = await ts.register("a", 0);
  const b = await ts.register("b", 1);
  if ((await a.waitForParameters()).initialize) await a.initParameters((await import("../helpers/test-server.ts")).initialParameters());
  for (let s = from; s < from + steps; s++) {
    await Promise.all([a.push(gradient(s + 1), s, { exampleCount: 1, position: { epoch: 0, batch: s + 1 } }), b.push(gradient(-s), s, { exampleCount: 1, position: { epoch: 0, batch: s + 1 } })]);
  }
  return (await a.pull()).tensors;
}

async function checkpointRoundTrip(t: Test, uri: string, extraEnv: Record<string, string> = {}) {
  const env = { ...ADAM, CHECKPOINT_URI: uri, ...extraEnv };
  // Reference: 6 uninterrupted steps.
  const reference = await runSteps(await startTestServer(t, { ...ADAM }), 0, 6);

  // The same 6 steps, with a restart after step 3.
  const first = await startTestServer(t, env);
  await runSteps(first, 0, 3);
  await first.server.checkpointer!.close();
  await first.server.close();
  const second = await startTestServer(t, env);
  t.equal(second.server.run.store.version, 3, "the new server resumed at version 3");
  t.equal(second.server.run.updater.updatesApplied, 3, "with the schedule's position");
  t.same(second.server.run.membership.slots.map((s) => s.position.batch), [3, 3], "and each slot's data position");
  const resumed = await runSteps(second, 3, 3);
  t.same(values(resumed), values(reference), "6 steps with a restart in the middle give bit-identical parameters (Adam moments restored)");
  await second.server.checkpointer!.close(); // let the last write and its pruning finish
}

t.test("local directory: resume is exact; old checkpoints are pruned", async (t) => {
  const dir = join(t.testdir(), "ckpt");
  await checkpointRoundTrip(t, dir, { CHECKPOINT_KEEP: "2" });
  const files = (await readdir(dir)).sort();
  t.same(files, ["ckpt-0000000005.safetensors", "ckpt-0000000006.safetensors"], "only the newest CHECKPOINT_KEEP=2 remain, and no partial files");
  const latest = decodeSafetensors(await readFile(join(dir, files[1]!)));
  t.equal(latest.metadata.format, "distributed-ps-checkpoint/2", "the checkpoint says what it is");
  t.ok(latest.tensors.some((x) => x.name === "optimizer/w/m") && latest.tensors.some((x) => x.name === "optimizer/w/v"), "Adam's moments are stored by tensor name");
});

t.test("a corrupt or truncated newest checkpoint is reported and the previous one is used", async (t) => {
  const dir = join(t.testdir(), "ckpt");
  const first = await startTestServer(t, { ...ADAM, CHECKPOINT_URI: dir, CHECKPOINT_KEEP: "5" });
  await runSteps(first, 0, 4);
  await first.server.checkpointer!.close();
  await first.server.close();

  // Version 4: a slot's data position changed in the header (the metadata), same length. Version 3:
  // one data byte flipped. Version 2: cut short (as if half written).
  const v4 = join(dir, "ckpt-0000000004.safetensors");
  const header = await readFile(v4);
  const position = Buffer.from('\\"position\\":{\\"epoch\\":0,\\"batch\\":4}');
  const at = header.indexOf(position);
  t.ok(at > 0, "the header holds slot 0's data position");
  header[at + position.length - 2] = "9".charCodeAt(0);
  await writeFile(v4, header);
  const v3 = join(dir, "ckpt-0000000003.safetensors");
  const bytes = await readFile(v3);
  bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0xff;
  await writeFile(v3, bytes);
  const v2 = join(dir, "ckpt-0000000002.safetensors");
  await truncate(v2, (await readFile(v2)).length - 10);

  const second = await startTestServer(t, { ...ADAM, CHECKPOINT_URI: dir });
  t.equal(second.server.run.store.version, 1, "resumed from version 1, the newest intact checkpoint");
  t.same(second.server.run.membership.slots.map((s) => s.position.batch), [1, 1], "with its own data positions");
  t.ok(second.logs.some((l) => /ckpt-0000000004.safetensors is unusable \(checksum/.test(l)), "the changed header of version 4 is reported: the checksum covers it");
  t.ok(second.logs.some((l) => /ckpt-0000000003.safetensors is unusable \(checksum/.test(l)), "the flipped data byte of version 3 is reported");
  t.ok(second.logs.some((l) => /ckpt-0000000002.safetensors is unusable \(.*truncated/.test(l)), "the truncation of version 2 is reported");
});

t.test("S3 (s3rver on loopback): checkpoints and resume through the S3 API", async (t) => {
  const endpoint = await startS3rver(t);
  await checkpointRoundTrip(t, "s3://ps-bucket/runs/test", { S3_ENDPOINT: endpoint, CHECKPOINT_KEEP: "2" });
});

t.test("a resized run's worker count, retired slots and data plan survive a restart", async (t) => {
  const dir = join(t.testdir(), "ckpt");
  const env = { ...ADAM, SERVER_MODE: "async", CHECKPOINT_URI: dir, CHECKPOINT_EVERY_STEPS: "0", CHECKPOINT_EVERY_SECONDS: "0", TOTAL_WORKERS_EXPECTED: "3" };
  const first = await startTestServer(t, env);
  const [a, b] = await workersWithParameters(first, 3);
  const part = await a!.nextAssignment(2);
  if (part.kind !== "train") throw new Error(`expected a part, got ${part.kind}`);
  await b!.nextAssignment(2);
  first.server.run.resize(2); // slot 2 never asked for its part: free, retired, its part handed over
  await a!.push(gradient(1), 0, { exampleCount: 32, position: { epoch: 0, batch: 1, part: part.part, batches: 5 } });
  await first.server.checkpointer!.save("test");
  await first.server.checkpointer!.close();
  await first.server.close();

  const second = await startTestServer(t, { ...env, TOTAL_WORKERS_EXPECTED: "4" });
  const run = second.server.run;
  t.equal(run.membership.workerCount, 2, "the checkpoint's worker count (2) wins over TOTAL_WORKERS_EXPECTED");
  t.same(run.membership.slots.map((s) => s.retired), [false, false, true], "slot 2 is still retired");
  const parts = run.plan.epoch(0)!;
  t.same(
    parts.map((p) => [p.holder, p.batch, p.batches, p.examples]),
    [
      [0, 1, 5, 32],
      [1, 0, undefined, 0],
      [undefined, 0, undefined, 0],
    ],
    "epoch 1's plan: slot 0 one batch in, slot 1 not started, slot 2's part waiting for someone",
  );
});

t.test("a resize is a checkpoint of its own: a server killed right after keeps the new count", async (t) => {
  const dir = join(t.testdir(), "ckpt");
  const env = { SERVER_MODE: "async", CHECKPOINT_URI: dir, CHECKPOINT_EVERY_STEPS: "0", CHECKPOINT_EVERY_SECONDS: "0", TOTAL_WORKERS_EXPECTED: "3" };
  const first = await startTestServer(t, env);
  const [a] = await workersWithParameters(first, 3);
  await a!.push(gradient(1), 0, { exampleCount: 32 });
  await first.server.checkpointer!.save("test");
  const written = first.server.checkpointer!.saved;
  first.server.run.resize(2);
  // No update since: only the resize changed, and nothing else asks for a checkpoint.
  await waitUntil(() => first.server.checkpointer!.saved === written + 1, "a checkpoint after the resize");
  // As after SIGKILL: no checkpoint at shutdown.
  await first.server.checkpointer!.close();
  await first.server.close();

  const second = await startTestServer(t, env);
  t.equal(second.server.run.store.version, 1, "the same version");
  t.equal(second.server.run.membership.workerCount, 2, "with the count set last");
  t.same(second.server.run.membership.slots.map((s) => s.retired), [false, false, true], "slot 2 retired");
});
