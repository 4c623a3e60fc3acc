/**
 * What a benchmark run writes and prints: the results document, its tables, the comparison with an
 * earlier run, the one-line summary of the target workload, and the charts.
 */
import { barChart, lineChart, writePng, type ChartSpec } from "../../scripts/lib/charts.ts";
import type { Http2Limit, MemcpyLimit } from "./limits.ts";
import type { ProfileSummary } from "./profile.ts";
import type { PsCaseResult } from "./ps-case.ts";
import { ratio, round } from "./stats.ts";

export const SCHEMA = "distributed-ps-bench/1";

export interface CaseReport extends PsCaseResult {
  kind: "bytes" | "scaling";
  /**
   * The raw HTTP/2 limit with the same clients and bytes per round, when measured: the median of
   * `--limit-runs` runs, whose rates runs_rounds_per_s lists (absent in results written before it).
   */
  limit: { key: string; rounds_per_s: number; MB_per_s: number; get_p50_ms: number | null; post_p50_ms: number | null; server_cpu_ms_per_round: number | null; runs_rounds_per_s?: number[] } | null;
  /** This case's figures over the limit's (throughput: fraction of the ceiling; latency and CPU: times the ceiling's). */
  ratio: {
    rounds_per_s: number | null;
    pull_p50: number | null;
    push_p50: number | null;
    server_cpu_per_round: number | null;
    /** Payload MB/s over one memcpy's MB/s. */
    MB_per_s_to_memcpy: number | null;
    /** Server peak RSS over the model's float32 size: how many copies of the model the server holds at its peak. */
    server_peak_rss_to_model: number | null;
  };
  /** Scaling cases: samples per second at the configured batch size. */
  samples_per_s?: number;
}

export interface ScalingPoint {
  workers: number;
  rounds_per_s: number;
  samples_per_s: number;
  /** samples_per_s(N) / (N × samples_per_s(1)). */
  efficiency: number | null;
}

export interface Scaling {
  model: string;
  mode: string;
  pull_dtype: string;
  push_dtype: string;
  compute_ms: number;
  compute: string;
  batch_size: number;
  points: ScalingPoint[];
}

export interface BenchResult {
  schema: typeof SCHEMA;
  started_at: string;
  finished_at: string;
  duration_s: number;
  machine: Record<string, unknown>;
  options: Record<string, unknown>;
  limits: { memcpy: MemcpyLimit | null; http2: Http2Limit[] };
  cases: CaseReport[];
  scaling: Scaling | null;
  profiles: ProfileSummary[];
  errors: { id: string; message: string }[];
  target: Record<string, unknown> | null;
}

export function withLimit(c: PsCaseResult, kind: CaseReport["kind"], limit: Http2Limit | undefined, memcpy: MemcpyLimit | null): CaseReport {
  return {
    ...c,
    kind,
    limit:
      limit === undefined
        ? null
        : {
            key: limit.key,
            rounds_per_s: limit.rounds_per_s,
            MB_per_s: limit.MB_per_s,
            get_p50_ms: limit.pull_ms.p50,
            post_p50_ms: limit.push_ms.p50,
            server_cpu_ms_per_round: limit.server.cpu_ms_per_round,
            runs_rounds_per_s: limit.runs_rounds_per_s,
          },
    ratio: {
      rounds_per_s: round(ratio(c.rounds_per_s, limit?.rounds_per_s), 3),
      pull_p50: round(ratio(c.pull_ms.p50, limit?.pull_ms.p50), 2),
      push_p50: round(ratio(c.push_ms.p50, limit?.push_ms.p50), 2),
      server_cpu_per_round: round(ratio(c.server.cpu_ms_per_round, limit?.server.cpu_ms_per_round), 2),
      MB_per_s_to_memcpy: round(ratio(c.MB_per_s, memcpy?.buffer_copy_MB_per_s), 3),
      server_peak_rss_to_model: round(ratio(c.server.peak_rss_MB, (c.params * 4) / 1e6), 2),
    },
  };
}

export function scalingOf(cases: readonly CaseReport[], batchSize: number): Scaling | null {
  const s = cases.filter((c) => c.kind === "scaling").sort((a, b) => a.workers - b.workers);
  if (s.length === 0) return null;
  const one = s.find((c) => c.workers === 1);
  const first = s[0]!;
  return {
    model: first.model,
    mode: first.mode,
    pull_dtype: first.pull_dtype,
    push_dtype: first.push_dtype,
    compute_ms: first.compute_ms,
    compute: first.compute,
    batch_size: batchSize,
    points: s.map((c) => ({
      workers: c.workers,
      rounds_per_s: c.rounds_per_s,
      samples_per_s: round(c.rounds_per_s * batchSize, 1)!,
      efficiency: one === undefined ? null : round(c.rounds_per_s / (c.workers * one.rounds_per_s), 3),
    })),
  };
}

/** The fields of the BENCH_JSON line, for the target case, its single-worker twin and its sharded twin. */
/** The small models' targets (issue 18): a 55k sync round at N=1 within this much of raw HTTP/2's round trip; at N=4, this share of its rounds/s. */
export const SMALL_TARGETS = { n1_extra_ms_per_round: 1, n4_ratio_to_limit: 0.7 };

/**
 * One line for the small-model cases (`--small`, and the curated matrix): per case its rounds/s,
 * the raw HTTP/2 rounds/s of the same bytes, their ratio, and the time per round of each — the
 * difference is what the parameter server adds to a round trip.
 */
export function smallModelLine(cases: readonly CaseReport[]): Record<string, unknown> | null {
  const small = cases.filter((c) => c.kind === "bytes" && (c.model === "55k" || c.model === "1M") && c.shards === 1 && c.limit !== null);
  if (small.length === 0) return null;
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    cases: Object.fromEntries(
      small.map((c) => [
        `${c.model} ${c.mode} N=${c.workers}`,
        {
          rounds_per_s: c.rounds_per_s,
          http2_limit_rounds_per_s: c.limit!.rounds_per_s,
          ratio_to_limit: c.ratio.rounds_per_s,
          ms_per_round: round(1000 / c.rounds_per_s),
          http2_limit_ms_per_round: round(1000 / c.limit!.rounds_per_s),
          extra_ms_per_round: round(1000 / c.rounds_per_s - 1000 / c.limit!.rounds_per_s),
          pull_p50_ms: c.pull_ms.p50,
          pull_p90_ms: c.pull_ms.p90,
          push_p50_ms: c.push_ms.p50,
          push_p90_ms: c.push_ms.p90,
        },
      ]),
    ),
    targets: SMALL_TARGETS,
  };
}

export function targetLine(
  r: Pick<BenchResult, "cases" | "limits">,
  target: CaseReport,
  single: CaseReport | undefined,
  sharded: CaseReport | undefined,
  file: string,
): Record<string, unknown> {
  return {
    rounds_per_s: target.rounds_per_s,
    MB_per_s: target.MB_per_s,
    http2_limit_MB_per_s: target.limit?.MB_per_s ?? null,
    http2_limit_rounds_per_s: target.limit?.rounds_per_s ?? null,
    http2_limit_runs_rounds_per_s: target.limit?.runs_rounds_per_s ?? null,
    ratio_to_limit: target.ratio.rounds_per_s,
    pull_p50_ms: target.pull_ms.p50,
    pull_p90_ms: target.pull_ms.p90,
    push_p50_ms: target.push_ms.p50,
    push_p90_ms: target.push_ms.p90,
    workers: target.workers,
    params: target.params,
    model: target.model,
    mode: target.mode,
    pull_dtype: target.pull_dtype,
    push_dtype: target.push_dtype,
    server_cpu_cores: target.server.cpu_cores,
    server_cpu_ms_per_round: target.server.cpu_ms_per_round,
    server_peak_rss_MB: target.server.peak_rss_MB,
    server_rss_half_peak_growth_MB: target.server.rss_half_peak_growth_MB,
    server_rss_half_trough_growth_MB: target.server.rss_half_trough_growth_MB,
    clients_cpu_ms_per_round: target.clients_cpu_ms_per_round,
    http2_limit_server_cpu_ms_per_round: target.limit?.server_cpu_ms_per_round ?? null,
    machine_busy_cores: target.machine_busy_cores,
    other_busy_cores: target.other_busy_cores,
    single_worker_pull_p50_ms: single?.pull_ms.p50 ?? null,
    single_worker_push_p50_ms: single?.push_ms.p50 ?? null,
    single_worker_rounds_per_s: single?.rounds_per_s ?? null,
    single_worker_http2_limit_rounds_per_s: single?.limit?.rounds_per_s ?? null,
    // The same workload against K server processes (each worker talks to all of them).
    sharded:
      sharded === undefined
        ? null
        : {
            shards: sharded.shards,
            rounds_per_s: sharded.rounds_per_s,
            ratio_to_limit: sharded.ratio.rounds_per_s,
            pull_p50_ms: sharded.pull_ms.p50,
            push_p50_ms: sharded.push_ms.p50,
            server_cpu_ms_per_round: sharded.server.cpu_ms_per_round,
            server_peak_rss_MB: sharded.server.peak_rss_MB,
            machine_busy_cores: sharded.machine_busy_cores,
          },
    memcpy_MB_per_s: r.limits.memcpy?.buffer_copy_MB_per_s ?? null,
    // The bar from issue 6, for reading; a benchmark reports, it does not fail.
    targets: { rounds_per_s: 25, ratio_to_limit: 0.6, single_worker_pull_p50_ms: 40, single_worker_push_p50_ms: 30 },
    results_file: file,
  };
}

// ---- text tables ----

type Cell = string | number | null | undefined;

export function table(header: readonly string[], rows: readonly Cell[][]): string {
  const text = rows.map((r) => r.map((c) => (c === null || c === undefined ? "-" : String(c))));
  const widths = header.map((h, i) => Math.max(h.length, ...text.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...text.map(line)].join("\n");
}

const f = (v: number | null | undefined, d = 1) => (v === null || v === undefined || !Number.isFinite(v) ? null : v.toFixed(d));
const pair = (a: number | null, b: number | null, d = 1) => `${f(a, d) ?? "-"}/${f(b, d) ?? "-"}`;

export function casesTable(cases: readonly CaseReport[]): string {
  return table(
    ["case", "rounds/s", "MB/s", "limit MB/s", "ratio", "pull p50/p90 ms", "push p50/p90 ms", "srv CPU cores", "srv ms/round", "srv peak MB", "RSS growth peak/trough MB", "clients CPU", "client ms/round", "other load", "retries"],
    cases.map((c) => [
      c.id,
      f(c.rounds_per_s, 2),
      f(c.MB_per_s, 0),
      f(c.limit?.MB_per_s, 0),
      f(c.ratio.rounds_per_s, 2),
      pair(c.pull_ms.p50, c.pull_ms.p90),
      pair(c.push_ms.p50, c.push_ms.p90),
      f(c.server.cpu_cores, 2),
      f(c.server.cpu_ms_per_round, 1),
      f(c.server.peak_rss_MB, 0),
      pair(c.server.rss_half_peak_growth_MB, c.server.rss_half_trough_growth_MB),
      f(c.clients_cpu_cores, 2),
      f(c.clients_cpu_ms_per_round, 1),
      f(c.other_busy_cores, 2),
      c.retries,
    ]),
  );
}

/** Every figure of a case over its limit: throughput as a fraction of the ceiling, costs as multiples. */
export function ratiosTable(cases: readonly CaseReport[]): string {
  return table(
    ["case (over its raw HTTP/2 limit)", "rounds/s", "pull p50", "push p50", "srv CPU/round", "MB/s / memcpy", "srv peak / model size"],
    cases.map((c) => [
      c.id,
      f(c.ratio.rounds_per_s, 3),
      c.ratio.pull_p50 === null ? null : `${f(c.ratio.pull_p50, 1)}x`,
      c.ratio.push_p50 === null ? null : `${f(c.ratio.push_p50, 1)}x`,
      c.ratio.server_cpu_per_round === null ? null : `${f(c.ratio.server_cpu_per_round, 1)}x`,
      f(c.ratio.MB_per_s_to_memcpy, 4),
      c.ratio.server_peak_rss_to_model === null ? null : `${f(c.ratio.server_peak_rss_to_model, 1)}x`,
    ]),
  );
}

export function limitsTable(limits: BenchResult["limits"]): string {
  const parts: string[] = [];
  if (limits.memcpy) {
    const m = limits.memcpy;
    parts.push(
      `memcpy of ${(m.bytes / 1e6).toFixed(1)} MB: Buffer.copy ${m.buffer_copy_MB_per_s} MB/s (${m.copy_ms} ms), ` +
        `TypedArray.set ${m.typed_array_set_MB_per_s} MB/s, fresh allocation + copy ${m.alloc_and_copy_MB_per_s} MB/s`,
    );
  }
  if (limits.http2.length) {
    parts.push(
      table(
        ["raw HTTP/2 (bytes per round)", "clients", "rounds/s", "MB/s", "GET p50/p90 ms", "POST p50/p90 ms", "srv CPU cores", "srv ms/round", "srv peak MB", "clients CPU", "client ms/round", "other load"],
        limits.http2.map((l) => [
          `GET ${(l.get_bytes / 1e6).toFixed(1)} MB + POST ${(l.post_bytes / 1e6).toFixed(1)} MB`,
          l.clients,
          f(l.rounds_per_s, 2),
          f(l.MB_per_s, 0),
          pair(l.pull_ms.p50, l.pull_ms.p90),
          pair(l.push_ms.p50, l.push_ms.p90),
          f(l.server.cpu_cores, 2),
          f(l.server.cpu_ms_per_round, 1),
          f(l.server.peak_rss_MB, 0),
          f(l.clients_cpu_cores, 2),
          f(l.clients_cpu_ms_per_round, 1),
          f(l.other_busy_cores, 2),
        ]),
      ),
    );
  }
  return parts.join("\n\n");
}

export function scalingTable(s: Scaling): string {
  return table(
    ["workers", "rounds/s", "samples/s", "ideal samples/s", "efficiency"],
    s.points.map((p) => [p.workers, f(p.rounds_per_s, 2), f(p.samples_per_s, 0), f((s.points.find((q) => q.workers === 1)?.samples_per_s ?? NaN) * p.workers, 0), f(p.efficiency, 2)]),
  );
}

// ---- comparison with an earlier run ----

export interface CompareRow {
  item: string;
  metric: string;
  before: number | null;
  after: number | null;
  /** after / before. */
  ratio: number | null;
}

const CASE_METRICS: [string, (c: CaseReport) => number | null | undefined][] = [
  ["rounds/s", (c) => c.rounds_per_s],
  ["MB/s", (c) => c.MB_per_s],
  ["ratio to limit", (c) => c.ratio.rounds_per_s],
  ["pull p50 ms", (c) => c.pull_ms.p50],
  ["push p50 ms", (c) => c.push_ms.p50],
  ["server ms/round", (c) => c.server.cpu_ms_per_round],
  ["client ms/round", (c) => c.clients_cpu_ms_per_round],
  ["server peak MB", (c) => c.server.peak_rss_MB],
  // Not a result: how disturbed each measurement was (cores busy with something else).
  ["other load cores", (c) => c.other_busy_cores],
];

export function compare(before: BenchResult, after: BenchResult): CompareRow[] {
  const rows: CompareRow[] = [];
  const add = (item: string, metric: string, b: number | null | undefined, a: number | null | undefined) =>
    rows.push({ item, metric, before: b ?? null, after: a ?? null, ratio: round(ratio(a, b), 3) });
  for (const c of after.cases) {
    const old = before.cases.find((o) => o.id === c.id);
    if (old === undefined) continue;
    for (const [metric, get] of CASE_METRICS) add(c.id, metric, get(old), get(c));
  }
  for (const l of after.limits.http2) {
    const old = before.limits.http2.find((o) => o.key === l.key);
    if (old !== undefined) add(`raw HTTP/2 ${l.key}`, "rounds/s", old.rounds_per_s, l.rounds_per_s);
  }
  if (before.limits.memcpy && after.limits.memcpy) add("memcpy", "MB/s", before.limits.memcpy.buffer_copy_MB_per_s, after.limits.memcpy.buffer_copy_MB_per_s);
  for (const p of after.scaling?.points ?? []) {
    const old = before.scaling?.points.find((o) => o.workers === p.workers);
    if (old !== undefined) add(`scaling N=${p.workers}`, "samples/s", old.samples_per_s, p.samples_per_s);
  }
  return rows;
}

export function compareTable(rows: readonly CompareRow[]): string {
  if (rows.length === 0) return "(no case of this run was in the earlier one)";
  return table(
    ["item", "metric", "before", "after", "after/before"],
    rows.map((r) => [r.item, r.metric, f(r.before, 2), f(r.after, 2), f(r.ratio, 2)]),
  );
}

// ---- charts ----


/** The shared chart helpers truncate long labels; these charts' labels carry the case, so keep them whole. */
function wholeLabels(spec: ChartSpec, multiLineX = false): ChartSpec {
  const s = spec as Record<string, any>;
  s.config = { ...s.config, legend: { ...s.config?.legend, labelLimit: 0, columns: 2 } };
  if (multiLineX) s.encoding.x.axis = { ...s.encoding.x.axis, labelLimit: 0, labelExpr: "split(datum.label, '|')" };
  return spec;
}

export function throughputChart(r: BenchResult): ChartSpec | undefined {
  const cases = r.cases.filter((c) => c.kind === "bytes");
  if (cases.length === 0) return undefined;
  const label = (c: CaseReport) => `${c.model} ${c.mode}|${c.pull_dtype}/${c.push_dtype}|N=${c.workers}${c.shards > 1 ? ` K=${c.shards}` : ""}`;
  const spec = barChart({
    title: "Parameter server vs raw HTTP/2, same bytes per round",
    subtitle: "payload MB/s (pull + push), loopback; each pair: measured and the transport's ceiling",
    xTitle: "model, mode, pull/push dtype, workers",
    yTitle: "MB/s",
    width: Math.max(640, cases.length * 120),
    bars: cases.flatMap((c) => [
      { category: label(c), value: c.MB_per_s, group: "parameter server" },
      ...(c.limit ? [{ category: label(c), value: c.limit.MB_per_s, group: "raw HTTP/2" }] : []),
    ]),
  });
  return wholeLabels(spec, true);
}

export function scalingChart(s: Scaling): ChartSpec {
  const one = s.points.find((p) => p.workers === 1)?.samples_per_s;
  const spec = lineChart({
    title: "Training throughput with emulated compute",
    subtitle: `${s.model}, ${s.mode}, pull ${s.pull_dtype} push ${s.push_dtype}, ${s.compute_ms} ms compute (${s.compute}) per step, batch ${s.batch_size}`,
    xTitle: "workers",
    yTitle: "samples/s",
    xInteger: true,
    yZero: true,
    points: [
      ...s.points.map((p) => ({ series: "measured", x: p.workers, y: p.samples_per_s })),
      ...(one === undefined ? [] : s.points.map((p) => ({ series: "ideal (N x one worker)", x: p.workers, y: one * p.workers }))),
    ],
  });
  return wholeLabels(spec);
}

export function memoryChart(r: BenchResult): ChartSpec | undefined {
  const points = r.cases.flatMap((c) => c.server.rss_series.map(([x, y]) => ({ series: c.id, x, y })));
  if (points.length === 0) return undefined;
  const spec = lineChart({
    title: "Server resident memory during the measured rounds",
    subtitle: "flat lines: memory bounded, no growth per round",
    xTitle: "seconds into the measured window",
    yTitle: "RSS (MB)",
    yZero: true,
    points,
  });
  return wholeLabels(spec);
}

/** Writes <base>-throughput.png, -scaling.png and -memory.png (those that have data); returns the paths. */
export async function writeCharts(r: BenchResult, base: string): Promise<string[]> {
  const out: string[] = [];
  const charts: [string, ChartSpec | undefined][] = [
    ["throughput", throughputChart(r)],
    ["scaling", r.scaling ? scalingChart(r.scaling) : undefined],
    ["memory", memoryChart(r)],
  ];
  for (const [name, spec] of charts) {
    if (spec === undefined) continue;
    const path = `${base}-${name}.png`;
    await writePng(path, spec);
    out.push(path);
  }
  return out;
}
