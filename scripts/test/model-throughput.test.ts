/**
 * scripts/model-throughput.ts end to end on the smallest model: a row per engine and thread count,
 * the PyTorch columns filled when PyTorch is installed (and null, said so, when it is not), and the
 * THROUGHPUT_JSON line the issue tracker's benchmarks read.
 */
import t from "tap";
import { spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { referencePython } from "../lib/python.ts";

const script = fileURLToPath(new URL("../model-throughput.ts", import.meta.url));

t.test("times mlp with both engines and ends with THROUGHPUT_JSON", async (t) => {
  const r = spawnSync(process.execPath, [script], {
    env: { ...process.env, MODELS: "mlp", ROUNDS: "1", ROUND_SECONDS: "0.05" },
    encoding: "utf8",
    timeout: 120_000,
  });
  t.equal(r.status, 0, `exits 0 ${r.stderr.slice(-500)}`);
  const line = /^THROUGHPUT_JSON: (.*)$/m.exec(r.stdout);
  t.ok(line, "prints THROUGHPUT_JSON");
  const json = JSON.parse(line![1]!) as { results: Record<string, unknown>[]; pytorch: string | null };
  const threads = [...new Set([1, availableParallelism()])];
  t.same(json.results.map((row) => `${row.engine}/${row.threads}`), [...threads.map((n) => `onnxruntime/${n}`), "tfjs/1"], "a row per engine and thread count");
  const hasTorch = spawnSync(referencePython(), ["-c", "import torch"]).status === 0;
  for (const row of json.results) {
    t.same(Object.keys(row), ["model", "dataset", "batch_size", "engine", "threads", "ms_per_step", "pytorch_ms_per_step", "ratio_to_pytorch"], "the documented fields");
    t.ok((row.ms_per_step as number) > 0, `${row.engine}: a positive step time`);
    if (hasTorch) t.equal(row.ratio_to_pytorch, (row.ms_per_step as number) / (row.pytorch_ms_per_step as number), "ratio = ours / PyTorch's");
    else t.equal(row.ratio_to_pytorch, null, "no PyTorch: no ratio");
  }
  if (!hasTorch) t.match(r.stdout, /PyTorch: not available/, "and it says why the ratios are missing");
});
