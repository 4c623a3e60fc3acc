/**
 * What every benchmark client process (a byte-moving worker, a raw HTTP/2 client) reports: per-round
 * timings of its measured rounds and the window they span, as one tagged JSON line on stdout.
 */

export const ROUNDS_TAG = "BENCH_ROUNDS: ";

export interface RoundsRecord {
  label: string;
  /** Measured rounds (after the warm-up). */
  rounds: number;
  warmup: number;
  /** Per measured round, milliseconds. */
  pull_ms: number[];
  push_ms: number[];
  /** Payload bytes per round (tensor bytes, not framing). */
  pull_bytes: number;
  push_bytes: number;
  /** The measured window, milliseconds since the epoch (comparable across processes). */
  start_ms: number;
  end_ms: number;
  /** CPU seconds (user + system) this process used inside the window. */
  cpu_s: number;
  /** Pushes refused (Aborted / AlreadyExists) and redone. */
  retries: number;
  /** Peak resident memory of this process, bytes. */
  max_rss_bytes: number;
}

/** Milliseconds since the epoch with sub-millisecond resolution. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

export function printRecord(r: RoundsRecord): void {
  process.stdout.write(`${ROUNDS_TAG}${JSON.stringify(r)}\n`);
}

export const MiB = 1 << 20;
export const MB = 1e6;

/** "fp32" | "fp16" | "bf16": bytes per element on the wire. */
export const WIRE_BYTES = { fp32: 4, fp16: 2, bf16: 2 } as const;
export type WireDtype = keyof typeof WIRE_BYTES;

export function isWireDtype(s: string): s is WireDtype {
  return s in WIRE_BYTES;
}

/** Spends `ms` milliseconds: asleep (compute on another machine) or spinning on this CPU. */
export async function emulateCompute(ms: number, how: "sleep" | "busy"): Promise<void> {
  if (ms <= 0) return;
  if (how === "sleep") {
    await new Promise((r) => setTimeout(r, ms));
    return;
  }
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spin
  }
}
