import t from "tap";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { measure, serverUse } from "../lib/aggregate.ts";
import { medianRun } from "../lib/limits.ts";
import { modelLayout } from "../lib/models.ts";
import { summarizeProfile } from "../lib/profile.ts";
import type { Sample } from "../lib/procfs.ts";
import { compare, table, type BenchResult } from "../lib/report.ts";
import type { RoundsRecord } from "../lib/rounds.ts";
import { mean, peakGrowth, percentile, ratio, round, slope, summarize } from "../lib/stats.ts";

t.test("percentile interpolates between ranks like numpy", async (t) => {
  const v = [15, 20, 35, 40, 50];
  t.equal(percentile(v, 0), 15, "q=0 is the minimum");
  t.equal(percentile(v, 1), 50, "q=1 is the maximum");
  t.equal(percentile(v, 0.5), 35, "odd count: the middle value");
  t.equal(percentile([1, 2, 3, 4], 0.5), 2.5, "even count: the mean of the middle two");
  t.equal(percentile(v, 0.9), 46, "0.9: 40 + 0.6 * (50 - 40)");
  t.equal(percentile([50, 15, 40, 20, 35], 0.5), 35, "input order does not matter");
  t.equal(percentile([7], 0.9), 7, "one value is every percentile");
  t.ok(Number.isNaN(percentile([], 0.5)), "no values: NaN");
  t.throws(() => percentile(v, 1.5), RangeError, "q outside 0..1 is refused");
});

t.test("summarize", async (t) => {
  const values = Array.from({ length: 100 }, (_, i) => i + 1); // 1..100
  const s = summarize(values);
  t.equal(s.n, 100);
  t.equal(s.min, 1);
  t.equal(s.max, 100);
  t.equal(s.mean, 50.5);
  t.equal(s.p50, 50.5);
  t.equal(round(s.p90, 6), 90.1, "p90 of 1..100");
  t.equal(round(s.p99, 6), 99.01, "p99 of 1..100");
  t.ok(Number.isNaN(summarize([]).p50), "an empty summary is NaN, not 0");
  t.equal(mean([2, 4]), 3);
});

t.test("slope, peak growth, ratio, round", async (t) => {
  t.equal(round(slope([0, 1, 2, 3].map((x) => ({ x, y: 2 * x + 5 }))), 9), 2, "exact line");
  t.ok(Number.isNaN(slope([{ x: 1, y: 1 }])), "one point has no slope");
  t.ok(Number.isNaN(slope([{ x: 1, y: 1 }, { x: 1, y: 2 }])), "no spread in x: no slope");
  t.equal(peakGrowth([100, 140, 100, 140, 100, 140]), 0, "a steady sawtooth does not grow");
  t.equal(peakGrowth([100, 110, 120, 130, 140, 150]), 30, "a leak grows by the difference of the halves' peaks");
  t.ok(Number.isNaN(peakGrowth([1, 2, 3])), "too few points");
  t.equal(ratio(3, 4), 0.75);
  t.equal(ratio(3, 0), null, "division by zero is null");
  t.equal(ratio(null, 4), null);
  t.equal(ratio(NaN, 4), null);
  t.equal(round(1.23456, 2), 1.23);
  t.equal(round(Infinity), null, "JSON has no Infinity");
});

t.test("the 11.2M layout is the CIFAR ResNet-18", async (t) => {
  const m = modelLayout("11.2M");
  t.equal(m.params, 11_173_962, "ResNet-18's parameter count for 10 classes");
  t.equal(m.tensors.length, 62, "62 trainable tensors");
  t.same(m.tensors[0], { name: "stem_conv/kernel", shape: [3, 3, 3, 64] }, "3x3 stem on RGB input");
  t.same(m.tensors.at(-2), { name: "fc/kernel", shape: [512, 10] });
  t.equal(new Set(m.tensors.map((x) => x.name)).size, 62, "names are unique");
  t.equal(modelLayout("1M").tensors.length, 62, "1M has the same structure");
  t.ok(Math.abs(modelLayout("25M").params - 25e6) < 1e6, "25M is about 25 million");
  t.throws(() => modelLayout("7B"), RangeError);
});

const record = (o: Partial<RoundsRecord>): RoundsRecord => ({
  label: "w",
  rounds: 10,
  warmup: 1,
  pull_ms: Array(10).fill(20),
  push_ms: Array(10).fill(10),
  pull_bytes: 4e6,
  push_bytes: 2e6,
  start_ms: 1000,
  end_ms: 3000,
  cpu_s: 1,
  retries: 0,
  max_rss_bytes: 100e6,
  ...o,
});

t.test("measure aggregates clients over their common window", async (t) => {
  // The server: 0.5 s of CPU per second, RSS flat at 200 MB; the machine 1.5 cores busy.
  const samples: Sample[] = Array.from({ length: 41 }, (_, i) => ({ t: 1000 + i * 100, cpu: 10 + i * 0.05, rss: 200e6 + (i % 2) * 1e6, peak: 250e6, cpus: [10 + i * 0.05], peaks: [250e6], machineBusy: 100 + i * 0.15 }));
  const m = measure([record({ start_ms: 1000, end_ms: 3000 }), record({ start_ms: 1500, end_ms: 5000, pull_ms: Array(10).fill(40) })], samples);
  t.equal(m.clients, 2);
  t.equal(m.rounds, 20);
  t.equal(m.window_s, 4, "window from the first start to the last end");
  t.equal(m.rounds_per_s, 5);
  t.equal(m.MB_per_s, 30, "20 rounds x 6 MB in 4 s");
  t.equal(m.pull_ms.p50, 30, "percentiles over every client's rounds");
  t.equal(m.server.cpu_cores, 0.5);
  t.equal(m.server.cpu_ms_per_round, 100, "2 s of server CPU over 20 rounds");
  t.equal(m.server.peak_rss_MB, 250);
  t.equal(m.server.rss_half_peak_growth_MB, 0, "flat memory does not grow");
  t.ok(Math.abs(m.server.rss_slope_MB_per_round!) < 0.01, "no trend per round");
  t.equal(m.machine_busy_cores, 1.5);
  t.equal(m.clients_cpu_cores, 0.5, "2 s of client CPU in 4 s");
  t.equal(m.clients_cpu_ms_per_round, 100, "2 s of client CPU over 20 rounds");
  t.equal(m.server.rss_half_trough_growth_MB, 0, "nor do its troughs");
  t.equal(m.other_busy_cores, 0.5, "what neither the server nor the clients used");
  t.throws(() => measure([], samples), "no records");
});

t.test("serverUse sees a leak", async (t) => {
  const samples: Sample[] = Array.from({ length: 21 }, (_, i) => ({ t: i * 100, cpu: i, rss: 100e6 + i * 2e6, peak: 100e6 + i * 2e6, cpus: [i / 4, (3 * i) / 4], peaks: [50e6, 50e6 + i * 2e6], machineBusy: 0 }));
  const u = serverUse(samples, 0, 2000, 40); // 20 rounds per second, 20 MB per second
  t.equal(u.rss_slope_MB_per_round, 1, "2 MB per 100 ms at 2 rounds per 100 ms");
  t.ok(u.rss_half_peak_growth_MB! > 15, "second half's peak is higher");
  t.equal(u.rss_series.length, 21);
  t.same(u.shards, [{ cpu_cores: 2.5, peak_rss_MB: 50 }, { cpu_cores: 7.5, peak_rss_MB: 90 }], "two processes: each shard's share");
});

t.test("profile summary: self time per function, idle apart", async (t) => {
  const dir = t.testdir();
  const file = join(dir, "p.cpuprofile");
  const frame = (functionName: string, url = "", lineNumber = 0) => ({ functionName, url, lineNumber, columnNumber: 0, scriptId: "0" });
  writeFileSync(
    file,
    JSON.stringify({
      nodes: [
        { id: 1, callFrame: frame("(root)") },
        { id: 2, callFrame: frame("decodeElements", "file:///x/common/src/dtype.ts", 9) },
        { id: 3, callFrame: frame("(idle)") },
        { id: 4, callFrame: frame("(garbage collector)") },
      ],
      startTime: 0,
      endTime: 10_000,
      samples: [2, 2, 3, 4, 2],
      timeDeltas: [0, 1000, 1000, 3000, 1000],
    }),
  );
  const s = summarizeProfile(file);
  t.equal(s.idle_ms, 3, "the idle sample ran until the next sample, 3 ms later");
  t.equal(s.functions[0]!.function, "decodeElements");
  t.equal(s.functions[0]!.self_ms, 2, "the last sample has no duration");
  t.match(s.functions[0]!.location, /dtype\.ts:10$/, "1-based line");
  t.equal(s.functions[1]!.function, "(garbage collector)");
  t.equal(s.functions[0]!.share, round(2 / 3, 3), "share of busy time");
  // Samples at 0, 1000, 2000, 5000 and 6000 µs: the window [500, 2500] holds the second and third.
  const w = summarizeProfile(file, 10, { fromUs: 500, toUs: 2500 });
  t.equal(w.windowed, true);
  t.equal(w.functions.length, 1, "only decodeElements ran inside the window");
  t.equal(w.functions[0]!.self_ms, 1);
  t.equal(w.idle_ms, 3);
});

t.test("compare matches cases by id", async (t) => {
  const c = (rounds: number) => ({ id: "11.2M sync", rounds_per_s: rounds, MB_per_s: rounds * 67, ratio: { rounds_per_s: rounds / 30 }, pull_ms: { p50: 100 / rounds }, push_ms: { p50: 50 / rounds }, server: { cpu_ms_per_round: 10, peak_rss_MB: 300 } });
  const before = { cases: [c(5)], limits: { memcpy: null, http2: [] }, scaling: null } as unknown as BenchResult;
  const after = { cases: [c(20), { ...c(1), id: "new" }], limits: { memcpy: null, http2: [] }, scaling: null } as unknown as BenchResult;
  const rows = compare(before, after);
  t.equal(rows.find((r) => r.metric === "rounds/s")!.ratio, 4, "after/before");
  t.equal(rows.find((r) => r.metric === "pull p50 ms")!.ratio, 0.25);
  t.notOk(rows.some((r) => r.item === "new"), "cases only in one run are not compared");
  t.match(table(["a", "b"], [["x", 1], ["yy", null]]), /^a {2}\s*b\n-+ {2}-+\nx {3}1\nyy {2}-$/, "aligned text table");
});

t.test("medianRun picks the run with the median rate, the faster middle one of an even count", async (t) => {
  const runs = [40, 32, 44, 39, 42].map((rounds_per_s, i) => ({ rounds_per_s, i }));
  t.equal(medianRun(runs).i, 0, "odd count: 40 of 32, 39, 40, 42, 44");
  t.equal(medianRun(runs.slice(0, 4)).i, 0, "even count: 40 of 32, 39 | 40, 44");
  t.equal(medianRun([{ rounds_per_s: 7 }]).rounds_per_s, 7, "one run is its own median");
  t.same(runs.map((r) => r.rounds_per_s), [40, 32, 44, 39, 42], "the input is not reordered");
  t.throws(() => medianRun([]), /no runs/);
});
