/**
 * The machine's limits the benchmark compares against, measured in the same run: memcpy in one
 * process, and raw HTTP/2 between processes (bench/h2-server.ts and N bench/h2-client.ts) moving
 * the same bytes per round as the parameter-server workload, with no protocol and no processing.
 */
import { measure, type Measurement } from "./aggregate.ts";
import { exitWithin, startNode, type Child } from "./processes.ts";
import { ProcessSampler } from "./procfs.ts";
import { epochMs, MB, ROUNDS_TAG, type RoundsRecord } from "./rounds.ts";
import { round } from "./stats.ts";

export interface MemcpyLimit {
  bytes: number;
  /** Buffer.copy between two existing buffers. */
  buffer_copy_MB_per_s: number;
  /** Float32Array.set between two existing arrays. */
  typed_array_set_MB_per_s: number;
  /** A fresh Buffer.allocUnsafeSlow per copy: what allocating per round costs (page faults). */
  alloc_and_copy_MB_per_s: number;
  /** Milliseconds for one copy of `bytes` (Buffer.copy, median). */
  copy_ms: number;
}

function rate(bytes: number, minMs: number, once: () => void): { MBps: number; medianMs: number } {
  once(); // warm-up: first touch of the pages
  const times: number[] = [];
  const started = performance.now();
  while (times.length < 3 || performance.now() - started < minMs) {
    const t = performance.now();
    once();
    times.push(performance.now() - t);
  }
  const total = times.reduce((a, b) => a + b, 0);
  times.sort((x, y) => x - y);
  return { MBps: (bytes * times.length) / MB / (total / 1000), medianMs: times[Math.floor(times.length / 2)]! };
}

export function memcpyLimit(bytes: number, minMs = 400): MemcpyLimit {
  const n = Math.ceil(bytes / 4);
  const src = new Float32Array(n).fill(1.5);
  const dst = new Float32Array(n);
  const srcBuf = Buffer.from(src.buffer);
  const dstBuf = Buffer.from(dst.buffer);
  const copy = rate(n * 4, minMs, () => srcBuf.copy(dstBuf));
  const set = rate(n * 4, minMs, () => dst.set(src));
  const alloc = rate(n * 4, minMs, () => srcBuf.copy(Buffer.allocUnsafeSlow(n * 4)));
  return {
    bytes: n * 4,
    buffer_copy_MB_per_s: round(copy.MBps, 0)!,
    typed_array_set_MB_per_s: round(set.MBps, 0)!,
    alloc_and_copy_MB_per_s: round(alloc.MBps, 0)!,
    copy_ms: round(copy.medianMs, 2)!,
  };
}

export interface Http2LimitSpec {
  clients: number;
  getBytes: number;
  postBytes: number;
  /** Length of the measured window. */
  seconds: number;
  warmup: number;
}

export interface Http2Limit extends Measurement {
  key: string;
  get_bytes: number;
  post_bytes: number;
  /**
   * rounds/s of every run of this limit, in the order they ran; the other figures are those of
   * the median run (runHttp2LimitMedian).
   */
  runs_rounds_per_s: number[];
}

export function http2LimitKey(s: { clients: number; getBytes: number; postBytes: number }): string {
  return `${s.clients}x GET ${s.getBytes} POST ${s.postBytes}`;
}

/** One measurement of the raw HTTP/2 limit (runHttp2LimitMedian repeats it). */
export async function runHttp2Limit(spec: Http2LimitSpec): Promise<Omit<Http2Limit, "runs_rounds_per_s">> {
  const server = startNode("h2-server", "bench/h2-server.ts", ["--port", "0"]);
  const clients: Child[] = [];
  let sampler: ProcessSampler | undefined;
  try {
    const line = await server.waitFor(/^listening on /, 20_000);
    const address = line.slice("listening on ".length).trim();
    sampler = new ProcessSampler(server.pid, 50);
    // Start the window once every client has connected and warmed up (Node starts in ~0.1 s; a
    // warm-up round of 45 MB + 22 MB takes ~50 ms; leave room on a slow machine).
    const startAt = epochMs() + 1500 + spec.warmup * 300;
    const endAt = startAt + spec.seconds * 1000;
    for (let i = 0; i < spec.clients; i++) {
      clients.push(
        startNode(`h2-client ${i}`, "bench/h2-client.ts", [
          "--address", address,
          "--get-bytes", String(spec.getBytes),
          "--post-bytes", String(spec.postBytes),
          "--warmup", String(spec.warmup),
          "--start-at", String(Math.round(startAt)),
          "--end-at", String(Math.round(endAt)),
          "--label", `h2-client-${i}`,
        ]),
      );
    }
    const budget = 60_000 + spec.seconds * 1000 * 3;
    const codes = await Promise.all(clients.map((c) => exitWithin(c, budget)));
    const failed = clients.find((_, i) => codes[i] !== 0);
    if (failed) throw new Error(`${failed.name} failed; last lines:\n${failed.tail()}`);
    sampler.sample();
    const records = clients.map((c) => c.record<RoundsRecord>(ROUNDS_TAG)!);
    return { key: http2LimitKey(spec), get_bytes: spec.getBytes, post_bytes: spec.postBytes, ...measure(records, sampler.samples) };
  } finally {
    sampler?.stop();
    for (const c of clients) c.kill();
    server.kill("SIGTERM");
    await exitWithin(server, 5000).catch(() => {});
  }
}

/**
 * The raw HTTP/2 limit measured `runs` times in a row, as the median run. One 3-second window is a
 * noisy denominator on a shared 2-core machine: six back-to-back runs of the target's limit here
 * gave 32.4 to 44.0 rounds/s, a wider spread than the parameter server's own runs.
 */
export async function runHttp2LimitMedian(spec: Http2LimitSpec, runs: number): Promise<Http2Limit> {
  const all: Omit<Http2Limit, "runs_rounds_per_s">[] = [];
  for (let i = 0; i < runs; i++) all.push(await runHttp2Limit(spec));
  return { ...medianRun(all), runs_rounds_per_s: all.map((l) => l.rounds_per_s) };
}

/** The run with the median rate; of an even count, the faster of the middle two (the stricter limit). */
export function medianRun<T extends { rounds_per_s: number }>(runs: readonly T[]): T {
  if (runs.length === 0) throw new RangeError("medianRun: no runs");
  const sorted = [...runs].sort((x, y) => x.rounds_per_s - y.rounds_per_s);
  return sorted[Math.floor(sorted.length / 2)]!;
}
