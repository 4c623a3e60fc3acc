/**
 * Retrying with exponential backoff and jitter, within a total time budget. On ECS the server may
 * come up after the workers, and a restarted server takes a while to listen again.
 */
import { Code, ConnectError } from "@connectrpc/connect";

export interface RetryOptions {
  /** Give up once this much time has passed since the first attempt (milliseconds). */
  budgetMs: number;
  /** First delay; doubled after every failure up to maxDelayMs. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Which failures are worth retrying; others are thrown at once. */
  retryable?: (err: ConnectError) => boolean;
  /** Told about every failure that will be retried. */
  onRetry?: (err: ConnectError, attempt: number, delayMs: number) => void;
  signal?: AbortSignal;
}

/**
 * Socket and HTTP/2 errors that connect-node reports as Internal, Aborted or Canceled rather than
 * Unavailable (an unreachable host, a reset connection, a stream torn down with the session — as
 * on the first call after the server died): the network's fault, not the server's answer.
 */
const NETWORK_ERROR = /\b(EHOSTUNREACH|ENETUNREACH|ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|EAI_AGAIN)\b|stream closed with error code/;
const MAY_BE_NETWORK = new Set([Code.Internal, Code.Aborted, Code.Canceled, Code.Unknown]);

/** Transport-level trouble: the server is not (yet, or any more) reachable. */
export const isTransient = (err: ConnectError) =>
  err.code === Code.Unavailable || err.code === Code.DeadlineExceeded || (MAY_BE_NETWORK.has(err.code) && NETWORK_ERROR.test(err.message));

export class RetryBudgetExhausted extends Error {
  readonly last: ConnectError;
  constructor(what: string, attempts: number, elapsedMs: number, last: ConnectError) {
    super(`${what}: gave up after ${attempts} attempts in ${(elapsedMs / 1000).toFixed(1)} s; last error: ${last.message}`);
    this.name = "RetryBudgetExhausted";
    this.last = last;
  }
}

export async function withRetry<T>(what: string, attempt: () => Promise<T>, o: RetryOptions): Promise<T> {
  const started = Date.now();
  const base = o.baseDelayMs ?? 200;
  const max = o.maxDelayMs ?? 5_000;
  const retryable = o.retryable ?? isTransient;
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (raw) {
      const err = ConnectError.from(raw);
      if (!retryable(err)) throw err;
      const elapsed = Date.now() - started;
      // Full jitter keeps restarted workers from retrying in lockstep.
      const delay = Math.min(max, base * 2 ** (n - 1)) * (0.5 + Math.random() / 2);
      if (elapsed + delay > o.budgetMs) throw new RetryBudgetExhausted(what, n, elapsed, err);
      o.onRetry?.(err, n, delay);
      await new Promise((resolve) => setTimeout(resolve, delay));
      if (o.signal?.aborted) throw err;
    }
  }
}
