/**
 * What a training run is told: the mode, the worker count, the time limits, the bounds on what
 * workers may send, the optimizer. The domain (run/, aggregation/, checkpoint/, the service) reads
 * these, never the environment: config.ts's `runOptionsFrom` is the one place that maps variables to
 * them, so the domain can be built in a test without an environment.
 */
import type { Identity } from "@distributed-ps/common/job-identity.ts";
import type { ModeName } from "../aggregation/aggregator.ts";
import type { OptimizerOptions } from "../optimizer/index.ts";
import type { ShardLayout } from "./shards.ts";

export interface RunOptions {
  /** How gradients are applied (SERVER_MODE). */
  mode: ModeName;
  /** Worker slots at the start (TOTAL_WORKERS_EXPECTED, or the ECS worker service's count). */
  workers: number;
  /** Epochs the run trains; undefined: the first worker's count fixes it (EPOCHS). */
  epochs: number | undefined;
  /** The job's fields this server fixes; a worker of another job is refused (job-identity.ts). */
  identity: Identity;
  /** How long a worker's lease lasts without a call (LEASE_MS). */
  leaseMs: number;
  /** How long a slot whose worker is gone waits for a replacement (REPLACEMENT_GRACE_MS). */
  replacementGraceMs: number;
  /** How long the start quorum waits after the first registration (START_TIMEOUT_MS). */
  startTimeoutMs: number;
  /** The longest a call waits for the run to change before answering "ask again" (WAIT_TIMEOUT_MS). */
  waitTimeoutMs: number;
  /** Sync and ssp: how long a step waits for stragglers (SYNC_TIMEOUT_MS). */
  syncTimeoutMs: number;
  /** How long an unfinished run may have no live worker before it stops (NO_WORKERS_TIMEOUT_MS). */
  noWorkersTimeoutMs: number;
  /** Async and ssp: the oldest gradient, in versions, still applied (MAX_STALENESS). */
  maxStaleness: number;
  /** Ssp: how many steps a worker may run ahead of the slowest (STALENESS_BOUND). */
  stalenessBound: number;
  /** Threads that apply an update together (STEP_THREADS). */
  stepThreads: number;
  /** The largest chunk payload a message may carry (MAX_CHUNK_BYTES). */
  maxChunkBytes: number;
  /** The most tensors a model may have (MAX_TENSORS). */
  maxTensors: number;
  /** The most elements a model may have in all (MAX_MODEL_ELEMENTS). */
  maxModelElements: number;
  /** This server's shard and every shard's address (SHARD_INDEX, SHARD_ADDRESSES). */
  shard: ShardLayout;
  /** The optimizer and its learning-rate schedule (OPTIMIZER, LEARNING_RATE, LR_*, …). */
  optimizer: OptimizerOptions;
}
