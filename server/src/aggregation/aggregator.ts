/**
 * An aggregator decides when and how pushed gradients become parameter updates. One exists per run,
 * chosen by SERVER_MODE: sync (a barrier per step), async (apply on arrival) or ssp (apply on
 * arrival, fast workers wait for slow ones).
 */
import type { Progress } from "../run/progress.ts";
import type { Slot } from "../run/slot.ts";
import type { ReceivedGradient } from "../run/received-gradient.ts";

export type ModeName = "sync" | "async" | "ssp";

export interface Push {
  readonly slot: Slot;
  /** Version of the parameters the gradient was computed against. */
  readonly baseVersion: number;
  /** Where the worker will be in its data once this gradient counts. */
  readonly progress: Progress | undefined;
  /** The RPC's abort signal: waits end when the caller goes away. */
  readonly signal: AbortSignal;
}

export interface PushOutcome {
  /** Parameter version after the gradient (or the step containing it) was applied. */
  version: number;
  /** Versions between the gradient's base and the version it was applied to. */
  staleness: number;
  /** Gradients averaged into the update that contained this one. */
  contributors: number;
}

export interface Aggregator {
  readonly mode: ModeName;
  /** Gradients refused as too stale (async/ssp) or late for their step (sync). */
  readonly staleRejected: number;
  /**
   * Cheap checks on a push's header before its gradient streams in; throws ConnectError. Checked
   * again at submit, since the state may change while the gradient arrives.
   */
  admit(slot: Slot, baseVersion: number): void;
  /**
   * Takes a complete, validated gradient (the aggregator releases it once applied or refused) and
   * resolves once it counts as the mode defines.
   */
  submit(push: Push, gradient: ReceivedGradient): Promise<PushOutcome>;
  onJoin(slot: Slot, replacement: boolean): void;
  /** The parameters were restored at `version` (from a checkpoint): start counting from there. */
  restart(version: number): void;
  /** A slot stopped taking part (lease expired, finished, retired, waiting for data): re-check waits. */
  onLeave(): void;
  /** Ends pending waits (server shutdown). */
  close(): void;
}
