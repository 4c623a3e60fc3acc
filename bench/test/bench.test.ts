/**
 * `make bench` end to end at a tiny size: real server, byte-moving workers and raw HTTP/2 processes,
 * checked for the shape of what it writes and prints, not for speed (a benchmark never fails a slow
 * machine).
 */
import t from "tap";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { NODE_FLAGS } from "@distributed-ps/common/node-flags.ts";
import { runNode } from "../../test/helpers/processes.ts";
import type { BenchResult } from "../lib/report.ts";

async function run(args: string[]): Promise<{ code: number; out: string }> {
  const { code, output } = await runNode("bench/run.ts", { args, timeoutMs: 60_000 });
  return { code, out: output };
}

const positive = (v: unknown) => typeof v === "number" && Number.isFinite(v) && v > 0;

t.test("a tiny benchmark run writes its results, charts and BENCH_JSON line", async (t) => {
  const out = t.testdir();
  // --no-one-trip: every round pulls, so that every figure below is measured (the tiny model would
  // otherwise come back in the push's answer, and its pulls take no time).
  const args = ["--models", "tiny", "--workers", "2", "--shards", "1,2", "--rounds", "3", "--warmup", "1", "--limit-seconds", "0.3", "--limit-runs", "2", "--no-one-trip"];
  const r = await run([...args, "--scaling-workers", "1,2", "--compute-ms", "5", "--scaling-rounds", "3", "--out", out]);
  t.equal(r.code, 0, `exit code 0; output:\n${r.out}`);

  const lines = r.out.trim().split("\n");
  t.match(lines.at(-1), /^BENCH_JSON: \{/, "the last line is the BENCH_JSON summary");
  const line = JSON.parse(lines.at(-1)!.slice("BENCH_JSON: ".length)) as Record<string, unknown>;
  for (const k of ["rounds_per_s", "MB_per_s", "http2_limit_MB_per_s", "ratio_to_limit", "pull_p50_ms", "push_p50_ms", "workers", "params"]) {
    t.ok(positive(line[k]), `BENCH_JSON ${k} is a positive number (${String(line[k])})`);
  }
  t.equal(line.workers, 2);
  t.equal(line.params, 2400, "the tiny layout's parameters");
  const shardedLine = line.sharded as Record<string, unknown>;
  t.equal(shardedLine.shards, 2, "BENCH_JSON carries the same workload against two shards");
  t.ok(positive(shardedLine.rounds_per_s) && positive(shardedLine.ratio_to_limit), `with its rate and ratio (${JSON.stringify(shardedLine)})`);
  t.match(r.out, /\[1\/4\] tiny sync pull fp32 push fp16 N=2:/, "progress lines name each case");

  const files = readdirSync(out);
  const json = files.find((f) => f.endsWith(".json"));
  t.ok(json, "a results file");
  t.ok(files.some((f) => f.endsWith("-throughput.png")), "a throughput chart");
  t.ok(files.some((f) => f.endsWith("-scaling.png")), "a scaling chart");
  const png = readFileSync(join(out, files.find((f) => f.endsWith("-throughput.png"))!));
  t.same([...png.subarray(1, 4)], [...Buffer.from("PNG")], "the chart is a PNG");

  const res = JSON.parse(readFileSync(join(out, json!), "utf8")) as BenchResult;
  t.equal(res.schema, "distributed-ps-bench/1");
  t.same(res.errors, [], "no errors");
  t.equal(res.cases.length, 4, "two byte-moving cases (one server, two shards) and two scaling cases");
  const c = res.cases[0]!;
  t.equal(c.kind, "bytes");
  t.equal(c.rounds, 6, "3 measured rounds x 2 workers");
  t.equal(c.pull_ms.n, 6);
  t.equal(c.one_trip, false, "pulls every round, as asked");
  for (const v of [c.rounds_per_s, c.MB_per_s, c.window_s, c.pull_ms.p50, c.pull_ms.p90, c.push_ms.p50, c.push_ms.p90, c.server.peak_rss_MB]) {
    t.ok(positive(v), `case figure ${String(v)} is positive and finite`);
  }
  // The kernel counts CPU in 10 ms ticks: over a few tiny rounds the server may have used none yet.
  t.ok(typeof c.server.cpu_s === "number" && Number.isFinite(c.server.cpu_s) && c.server.cpu_s >= 0, `server CPU ${c.server.cpu_s} s is measured (zero or more)`);
  t.same(c.node_flags, NODE_FLAGS, "the processes ran with the flags of common/src/node-flags.ts");
  t.equal(c.pull_bytes, 2400 * 4, "fp32 pull");
  t.equal(c.push_bytes, 2400 * 2, "fp16 push");
  t.ok(c.limit !== null && positive(c.limit.MB_per_s), "the case carries its HTTP/2 limit");
  t.equal(c.limit?.runs_rounds_per_s?.length, 2, "measured twice (--limit-runs 2)");
  t.equal(c.limit?.rounds_per_s, Math.max(...(c.limit?.runs_rounds_per_s ?? [])), "reported as the faster of two runs");
  t.same(line.http2_limit_runs_rounds_per_s, c.limit?.runs_rounds_per_s, "BENCH_JSON lists the runs");
  t.match(r.out, /raw HTTP\/2, 2 client\(s\): [\d.]+ rounds\/s \(median of [\d.]+, [\d.]+\)/, "the log shows every run");
  t.ok(positive(c.ratio.rounds_per_s), "and its ratio to the limit");

  const sharded = res.cases[1]!;
  t.equal(sharded.id, "tiny sync pull fp32 push fp16 N=2 K=2");
  t.equal(sharded.rounds, 6, "two shards: the same rounds");
  t.equal(sharded.server.shards?.length, 2, "each shard's CPU and memory");
  t.ok(sharded.server.shards!.every((k) => positive(k.peak_rss_MB)));

  const l = res.limits.http2[0]!;
  t.equal(l.clients, 2, "the limit runs as many clients as the case has workers");
  t.equal(l.get_bytes, c.pull_bytes, "and moves the same bytes");
  t.ok(positive(l.rounds_per_s) && positive(l.pull_ms.p50));
  t.ok(res.limits.memcpy !== null && positive(res.limits.memcpy.buffer_copy_MB_per_s), "memcpy measured");

  t.equal(res.scaling?.points.length, 2);
  t.equal(res.scaling?.points[0]!.efficiency, 1, "one worker is the reference");
  t.ok(positive(res.scaling?.points[1]!.samples_per_s) && positive(res.scaling?.points[1]!.efficiency), "two workers' samples/s and efficiency");

  const cmp = await run(["--compare", join(out, json!), "--to", join(out, json!)]);
  t.equal(cmp.code, 0);
  t.match(cmp.out, /tiny sync pull fp32 push fp16 N=2\s+rounds\/s\s+[\d.]+\s+[\d.]+\s+1\.00/, "a run compared with itself: ratio 1.00");
});

t.test("bad options stop with a usage message", async (t) => {
  const r = await run(["--models", "tiny", "--workers", "0", "--no-limits"]);
  t.equal(r.code, 2);
  t.match(r.out, /--workers must be an integer >= 1/);
});

t.test("--node-flags reaches the server and worker processes", async (t) => {
  // node refuses a flag it does not know: the case fails, and the run says why.
  const r = await run(["--models", "tiny", "--workers", "1", "--rounds", "2", "--no-limits", "--no-scaling", "--no-chart", "--out", t.testdir(), "--node-flags=--no-such-node-flag"]);
  t.equal(r.code, 1, `exit code 1; output:\n${r.out}`);
  t.match(r.out, /bad option: --no-such-node-flag/, "node's own complaint is in the output");
});
