/**
 * Sharded servers end to end: `make test-local SHARDS=2` (two server processes, each holding part
 * of the tensors, and real worker processes) trains to exactly the same parameters as the same
 * seeded job on one server, bit for bit. Three workers in sync mode with Adam: the barrier sums in
 * slot order, so arrival order cannot change the last bits, and the optimizer state lives with each
 * tensor's shard.
 */
import t from "tap";
import { existsSync, readFileSync } from "node:fs";
import { decodeSafetensors } from "../../common/src/safetensors.ts";
import { runLocal as runJob } from "./helpers/run-local.ts";


/** A job whose results stay under `dir`. */
function runLocal(env: Record<string, string>, dir: string) {
  return runJob(env, `${dir}/run`);
}

/** The exported model as name -> raw float32 bytes, merging the shards' parts when there are several. */
function exportedModel(dir: string, shards: number): Map<string, { shape: number[]; bytes: Buffer }> {
  const files = shards === 1 ? [`${dir}/model.safetensors`] : Array.from({ length: shards }, (_, k) => `${dir}/shard-${k}-of-${shards}/model.safetensors`);
  const model = new Map<string, { shape: number[]; bytes: Buffer }>();
  for (const file of files) {
    if (!existsSync(file)) throw new Error(`no exported model at ${file}`);
    for (const tensor of decodeSafetensors(readFileSync(file)).tensors) {
      if (model.has(tensor.name)) throw new Error(`tensor ${tensor.name} exported by more than one shard`);
      model.set(tensor.name, { shape: [...tensor.shape], bytes: Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength) });
    }
  }
  return model;
}

t.test("sync, 3 workers: SHARDS=2 trains exactly the parameters SHARDS=1 does", async (t) => {
  const dir = t.testdir();
  const job = { WORKERS: "3", MODE: "sync", EPOCHS: "2", TRAIN_EXAMPLES: "9600", TEST_EXAMPLES: "1000", OPTIMIZER: "adam", LEARNING_RATE: "0.01", ACCURACY_TARGET: "0.6", SEED: "7" };
  const runs = new Map<number, ReturnType<typeof exportedModel>>();
  for (const shards of [1, 2]) {
    const r = await runLocal({ ...job, SHARDS: String(shards), EXPORT_URI: `${dir}/model-${shards}` }, `${dir}/${shards}`);
    t.equal(r.code, 0, `SHARDS=${shards}: run-local exits 0`);
    if (r.code !== 0) t.comment(r.output.slice(-3000));
    if (shards === 2) {
      t.match(r.output, /RUN_JSON: .*"shards":2/, "the run had two server shards");
      t.equal((r.output.match(/"role":"server"/g) ?? []).length, 2, "both shards printed their summary");
      t.match(r.output, /"role":"server".*"run_complete":true.*"shard":1,"shard_count":2/, "shard 1 saw the run complete");
      t.equal((r.output.match(/holding slot \d on all 2 server shards/g) ?? []).length, 3, "every worker holds the same slot on both shards");
    }
    runs.set(shards, exportedModel(`${dir}/model-${shards}`, shards));
  }
  const one = runs.get(1)!;
  const two = runs.get(2)!;
  const parts = [0, 1].map((k) => decodeSafetensors(readFileSync(`${dir}/model-2/shard-${k}-of-2/model.safetensors`)).tensors.length);
  t.ok(parts.every((n) => n > 0), `each shard exported a part of the model (${parts.join(" + ")} tensors)`);
  t.same([...two.keys()].sort(), [...one.keys()].sort(), "the shards' exports together hold exactly the unsharded model's tensors");
  const differing = [...one].filter(([name, a]) => {
    const b = two.get(name);
    return b === undefined || !a.bytes.equals(b.bytes) || a.shape.join() !== b.shape.join();
  });
  t.same(differing.map(([name]) => name), [], "every tensor is bit for bit identical");
  t.ok([...one.values()].some((v) => v.bytes.some((x) => x !== 0)), "and the parameters are not trivially zero");
});
