/**
 * Retrying with exponential backoff and jitter, within a total time budget. On ECS the server may
 * come up after the workers, and a restarted server takes a while to listen again.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";

/**
 * What a failed call means for the worker, decided by who failed and the gRPC status code, never by
 * the message's wording:
 * - "unreachable": no answer from the server — the connection was refused, reset or closed, a
 *   stream was reset (REFUSED_STREAM when a server stops), a GOAWAY, our own deadline — or the
 *   server said Unavailable or DeadlineExceeded (it is shutting down). Retry: a restarted server
 *   (ECS replacing the task) comes back at the same address.
 * - "busy": the server answered ResourceExhausted (no free slot yet): retry registering.
 * - "session-lost": the server no longer knows the session (FailedPrecondition: its lease ran out,
 *   the server restarted) or failed inside (Internal, Unknown): register again.
 * - "refused": the server refused the gradient (Aborted: too stale or its step is over;
 *   AlreadyExists: the slot already has one in the step): recompute the batch.
 * - "run-complete", "job-mismatch": the ErrorDetail of a refused registration.
 * - "fatal": anything else (InvalidArgument, Unauthenticated, ...): a bug or a misconfiguration.
 *
 * An error is the server's answer when Connect parsed it from the response (`isWireError`: a
 * grpc-status in the headers or trailers); anything else happened on the way.
 */
export type Failure = "unreachable" | "busy" | "session-lost" | "refused" | "run-complete" | "job-mismatch" | "fatal";

/**
 * The codes Connect gives failures that happen on the way (connection refused or reset, a stream
 * reset, the client's deadline, ENHANCE_YOUR_CALM). A local error with another code (an HTTP status
 * without a gRPC one, such as 401 from a proxy) is not the network's fault and is not retried.
 */
const TRANSPORT_CODES = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Canceled, Code.Aborted, Code.Internal, Code.Unknown, Code.ResourceExhausted]);

export function classifyFailure(raw: unknown): Failure {
  const err = ConnectError.from(raw);
  if (!err.isWireError) return TRANSPORT_CODES.has(err.code) ? "unreachable" : "fatal";
  const reason = err.findDetails(ErrorDetailSchema)[0]?.reason;
  if (reason === ErrorReason.RUN_COMPLETE) return "run-complete";
  if (reason === ErrorReason.JOB_MISMATCH) return "job-mismatch";
  switch (err.code) {
    case Code.Unavailable:
    case Code.DeadlineExceeded:
    case Code.Canceled:
      return "unreachable";
    case Code.ResourceExhausted:
      return "busy";
    case Code.FailedPrecondition:
    case Code.Internal:
    case Code.Unknown:
      return "session-lost";
    case Code.Aborted:
    case Code.AlreadyExists:
      return "refused";
    default:
      return "fatal";
  }
}

export interface RetryOptions {
  /** Give up once this much time has passed since the first attempt (milliseconds). */
  budgetMs: number;
  /** First delay; doubled after every failure up to maxDelayMs. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Which failures are worth retrying (default: the server is unreachable); others are thrown at once. */
  retryable?: (err: ConnectError) => boolean;
  /** Told about every failure that will be retried. */
  onRetry?: (err: ConnectError, attempt: number, delayMs: number) => void;
  signal?: AbortSignal;
}

/** The server is not (yet, or any more) reachable. */
export const isUnreachable = (err: ConnectError) => classifyFailure(err) === "unreachable";

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
  const retryable = o.retryable ?? isUnreachable;
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
