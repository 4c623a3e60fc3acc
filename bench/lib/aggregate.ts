/**
 * Turns the client processes' round records and the server's /proc samples into one measurement:
 * aggregate throughput over the common window, latency percentiles, and the server's CPU and memory
 * inside that window.
 */
import type { Sample } from "./procfs.ts";
import { MB, type RoundsRecord } from "./rounds.ts";
import { peakGrowth, round, roundedSummary, slope } from "./stats.ts";

export interface ServerUse {
  /** CPU seconds the server used in the window, and the cores that is on average. */
  cpu_s: number | null;
  cpu_cores: number | null;
  cpu_ms_per_round: number | null;
  /** VmHWM at the end of the window: the process's peak resident memory so far (summed over shards), MB. */
  peak_rss_MB: number | null;
  /** Highest sampled VmRSS inside the window, MB. */
  window_max_rss_MB: number | null;
  rss_start_MB: number | null;
  rss_end_MB: number | null;
  /** Peak RSS of the window's second half minus that of its first half, MB (~0 when bounded). */
  rss_half_peak_growth_MB: number | null;
  /** The same for the troughs (RSS right after collections: closer to live memory), MB. */
  rss_half_trough_growth_MB: number | null;
  /** Least-squares RSS trend over the window, MB per round (one pull + push of one client). */
  rss_slope_MB_per_round: number | null;
  /** [seconds since the window began, RSS MB], at most 120 points. */
  rss_series: [number, number][];
  /** Sharded servers: each shard's CPU in the window and peak memory. */
  shards?: { cpu_cores: number | null; peak_rss_MB: number | null }[];
}

export interface Measurement {
  clients: number;
  rounds: number;
  /** The measured window: milliseconds since the epoch, and its length. */
  window_start_ms: number;
  window_end_ms: number;
  window_s: number;
  rounds_per_s: number;
  /** Payload bytes moved per second, pull + push, in MB (10^6 bytes). */
  MB_per_s: number;
  bytes_per_round: number;
  pull_ms: ReturnType<typeof roundedSummary>;
  push_ms: ReturnType<typeof roundedSummary>;
  retries: number;
  /** CPU of all client processes inside their windows, in cores, and per round. */
  clients_cpu_cores: number | null;
  clients_cpu_ms_per_round: number | null;
  clients_peak_rss_MB: number | null;
  /** Busy cores of the whole machine in the window. */
  machine_busy_cores: number | null;
  /** Busy cores not used by the server or the clients: other load on the machine that disturbs the measurement. */
  other_busy_cores: number | null;
  server: ServerUse;
}

/** Linear interpolation of a sampled counter at time t (epoch ms). */
function at(samples: readonly Sample[], t: number, pick: (s: Sample) => number): number | null {
  if (samples.length === 0) return null;
  let before = samples[0]!;
  for (const s of samples) {
    if (s.t > t) {
      if (s === before || s.t === before.t) return pick(s);
      return pick(before) + ((pick(s) - pick(before)) * (t - before.t)) / (s.t - before.t);
    }
    before = s;
  }
  return pick(before);
}

export function serverUse(samples: readonly Sample[], from: number, to: number, rounds: number): ServerUse {
  const windowS = (to - from) / 1000;
  const c0 = at(samples, from, (s) => s.cpu);
  const c1 = at(samples, to, (s) => s.cpu);
  const cpu = c0 === null || c1 === null ? null : c1 - c0;
  const inside = samples.filter((s) => s.t >= from && s.t <= to);
  const rss = inside.map((s) => s.rss / MB);
  const roundsPerMs = rounds / (to - from);
  const step = Math.max(1, Math.ceil(inside.length / 120));
  const peakAtEnd = samples.filter((s) => s.t <= to).at(-1)?.peak;
  const last = samples.filter((s) => s.t <= to).at(-1);
  const shards = (samples[0]?.cpus.length ?? 1) > 1
    ? samples[0]!.cpus.map((_, k) => {
        const a = at(samples, from, (s) => s.cpus[k]!);
        const b = at(samples, to, (s) => s.cpus[k]!);
        return { cpu_cores: round(a === null || b === null ? null : (b - a) / windowS, 3), peak_rss_MB: round(last === undefined ? null : last.peaks[k]! / MB, 1) };
      })
    : undefined;
  return {
    cpu_s: round(cpu, 3),
    cpu_cores: round(cpu === null ? null : cpu / windowS, 3),
    cpu_ms_per_round: round(cpu === null ? null : (cpu * 1000) / rounds, 3),
    peak_rss_MB: round(peakAtEnd === undefined ? null : peakAtEnd / MB, 1),
    window_max_rss_MB: round(rss.length ? Math.max(...rss) : null, 1),
    rss_start_MB: round(rss[0], 1),
    rss_end_MB: round(rss.at(-1), 1),
    rss_half_peak_growth_MB: round(peakGrowth(rss), 1),
    rss_half_trough_growth_MB: round(-peakGrowth(rss.map((v) => -v)), 1),
    rss_slope_MB_per_round: round(slope(inside.map((s) => ({ x: (s.t - from) * roundsPerMs, y: s.rss / MB }))), 4),
    rss_series: inside.filter((_, i) => i % step === 0).map((s) => [round((s.t - from) / 1000, 2)!, round(s.rss / MB, 1)!]),
    ...(shards ? { shards } : {}),
  };
}

/** Aggregates the records of clients that ran together. */
export function measure(records: readonly RoundsRecord[], samples: readonly Sample[]): Measurement {
  if (records.length === 0) throw new Error("no client records to aggregate");
  const from = Math.min(...records.map((r) => r.start_ms));
  const to = Math.max(...records.map((r) => r.end_ms));
  const windowS = (to - from) / 1000;
  const rounds = records.reduce((n, r) => n + r.rounds, 0);
  const bytesPerRound = records.reduce((n, r) => n + (r.pull_bytes + r.push_bytes) * r.rounds, 0) / rounds;
  const b0 = at(samples, from, (s) => s.machineBusy);
  const b1 = at(samples, to, (s) => s.machineBusy);
  const machine = b0 === null || b1 === null ? null : (b1 - b0) / windowS;
  const clientsCores = records.reduce((s, r) => s + r.cpu_s, 0) / windowS;
  const server = serverUse(samples, from, to, rounds);
  return {
    clients: records.length,
    rounds,
    window_start_ms: Math.round(from),
    window_end_ms: Math.round(to),
    window_s: round(windowS, 3)!,
    rounds_per_s: round(rounds / windowS, 3)!,
    MB_per_s: round((rounds * bytesPerRound) / MB / windowS, 1)!,
    bytes_per_round: bytesPerRound,
    pull_ms: roundedSummary(records.flatMap((r) => r.pull_ms)),
    push_ms: roundedSummary(records.flatMap((r) => r.push_ms)),
    retries: records.reduce((n, r) => n + r.retries, 0),
    clients_cpu_cores: round(clientsCores, 3),
    clients_cpu_ms_per_round: round((clientsCores * windowS * 1000) / rounds, 3),
    clients_peak_rss_MB: round(Math.max(...records.map((r) => r.max_rss_bytes)) / MB, 1),
    machine_busy_cores: round(machine, 3),
    other_busy_cores: round(machine === null || server.cpu_cores === null ? null : Math.max(0, machine - clientsCores - server.cpu_cores), 2),
    server,
  };
}
