/**
 * STEP_THREADS end to end: a real server, two workers pushing float16 gradients as the worker
 * program does (kept encoded in the server's shared gradient regions), Adam, a model large enough
 * for the update to be split across threads. The parameters must come out bit for bit the same
 * with the update on one thread and on two.
 */
import t, { type Test } from "tap";
import { createHash } from "node:crypto";
import { Dtype } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { connectWorker, ensureParameters, startShards } from "../helpers/shards.ts";

// 1.2M parameters: above the 1M elements from which an update is split, in units of 262,144.
const SHAPES: [string, number[]][] = [
  ["conv/kernel", [600, 1000]],
  ["conv/bias", [1000]],
  ["fc/kernel", [1000, 599]],
  ["fc/bias", [7]],
];

function tensors(seed: number, scale: number): NamedTensor[] {
  return SHAPES.map(([name, shape], k) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return { name, shape, data: Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.013 + seed * 1.7 + k) * scale) };
  });
}

async function train(t: Test, threads: number): Promise<{ digest: string; byHelpers: number }> {
  const shards = await startShards(t, 1, { STEP_THREADS: String(threads), TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync", OPTIMIZER: "adam", LEARNING_RATE: "0.01" });
  const workers = [await connectWorker(shards.addresses, { label: "w0" }), await connectWorker(shards.addresses, { label: "w1" })];
  await Promise.all(workers.map((w) => ensureParameters(w, tensors(0, 1))));
  for (let step = 0; step < 4; step++) {
    await Promise.all(
      workers.map(async (w, i) => {
        const pulled = await w.pull();
        await w.push(tensors(step * 2 + i + 1, 0.01), pulled.version, { exampleCount: 1, dtype: Dtype.FLOAT16, bases: pulled.bases, position: { epoch: 0, batch: step } });
      }),
    );
  }
  const pulled = await workers[0]!.pull();
  const hash = createHash("sha256");
  for (const x of pulled.tensors) hash.update(new Uint8Array(x.data.buffer, x.data.byteOffset, x.data.byteLength));
  t.equal(pulled.version, 4, `${threads} thread(s): four steps applied`);
  return { digest: hash.digest("hex"), byHelpers: shards.servers[0]!.run.parallelStep.unitsByHelpers };
}

t.test("the parameters after four sync steps are the same with the update on one thread and on two", async (t) => {
  const one = await train(t, 1);
  const two = await train(t, 2);
  t.equal(one.byHelpers, 0, "STEP_THREADS=1: no helper ran anything");
  t.equal(two.digest, one.digest, "bit for bit the same parameters");
  t.comment(`STEP_THREADS=2: ${two.byHelpers} of the 4 updates' units ran on the helper (timing decides how many)`);
});
