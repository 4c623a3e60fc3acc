/**
 * The server's configuration, read from the environment (docs/configuration.md lists every variable).
 */
import { availableParallelism } from "node:os";
import { z } from "zod";
import { MESSAGE_RESERVE_BYTES } from "@distributed-ps/common/tensor-stream/chunk-tensors.ts";
import { boolVar, CROSS_FIELD, enumVar, intVar, numberVar, optionalIntVar, optionalStringVar, stringVar } from "@distributed-ps/common/env.ts";
import type { ConfigDocs } from "@distributed-ps/common/config-reference.ts";
import { configuredIdentity } from "@distributed-ps/common/job-identity.ts";
import type { RunOptions } from "./run/run-options.ts";
import type { ShardLayout } from "./run/shards.ts";

/** host:port, as addressVar accepts it. */
const ADDRESS = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$/;

export const serverEnvSchema = z
  .object({
    SERVER_HOST: stringVar("an interface address to listen on", "0.0.0.0"),
    SERVER_PORT: intVar({ min: 0, max: 65535, default: 8000 }),
    TOTAL_WORKERS_EXPECTED: intVar({ min: 1, max: 1024, default: 4 }),
    SERVER_MODE: enumVar(["sync", "async", "ssp"], "sync"),
    STALENESS_BOUND: intVar({ min: 0, max: 1_000_000, default: 3 }),
    MAX_STALENESS: intVar({ min: 0, max: 1_000_000, default: 64 }),
    OPTIMIZER: enumVar(["sgd", "momentum", "adam"], "sgd"),
    LEARNING_RATE: numberVar({ min: 0, max: 100, default: 0.1 }),
    MOMENTUM: numberVar({ min: 0, max: 0.9999, default: 0.9 }),
    NESTEROV: boolVar(false),
    ADAM_BETA1: numberVar({ min: 0, max: 0.9999, default: 0.9 }),
    ADAM_BETA2: numberVar({ min: 0, max: 0.999999, default: 0.999 }),
    ADAM_EPSILON: numberVar({ min: 1e-12, max: 1, default: 1e-8 }),
    WEIGHT_DECAY: numberVar({ min: 0, max: 1, default: 0 }),
    LR_SCHEDULE: enumVar(["constant", "step", "cosine"], "constant"),
    LR_STEP_SIZE: intVar({ min: 1, max: 1e9, default: 1000 }),
    LR_GAMMA: numberVar({ min: 0, max: 1, default: 0.1 }),
    LR_DECAY_STEPS: intVar({ min: 1, max: 1e9, default: 10_000 }),
    LR_MIN: numberVar({ min: 0, max: 100, default: 0 }),
    LR_WARMUP_STEPS: intVar({ min: 0, max: 1e9, default: 0 }),
    LEASE_MS: intVar({ min: 100, max: 3_600_000, default: 10_000 }),
    START_TIMEOUT_MS: intVar({ min: 0, max: 86_400_000, default: 60_000 }),
    SYNC_TIMEOUT_MS: intVar({ min: 100, max: 86_400_000, default: 600_000 }),
    WAIT_TIMEOUT_MS: intVar({ min: 10, max: 600_000, default: 20_000 }),
    // A slot whose worker is gone (lease ran out, or it left) keeps its data this long for a
    // replacement; then the data goes to the other workers.
    REPLACEMENT_GRACE_MS: intVar({ min: 0, max: 86_400_000, default: 30_000 }),
    // With no live worker at all for this long, an unfinished run stops (checkpoint, exit code 3)
    // instead of waiting forever.
    NO_WORKERS_TIMEOUT_MS: intVar({ min: 1_000, max: 604_800_000, default: 900_000 }),
    // What one client can hold (server.ts): connections, streams per connection, a stream that
    // makes no progress, a connection with no stream.
    MAX_CONNECTIONS: intVar({ min: 1, max: 1_000_000, default: 4096 }),
    MAX_STREAMS_PER_CONNECTION: intVar({ min: 1, max: 100_000, default: 100 }),
    STREAM_IDLE_TIMEOUT_MS: intVar({ min: 100, max: 3_600_000, default: 30_000 }),
    CONNECTION_IDLE_TIMEOUT_MS: intVar({ min: 100, max: 86_400_000, default: 60_000 }),
    // The run's identity (common/src/job-identity.ts): when set, a worker whose own setting differs
    // is refused at registration, whoever registers first. Unset: the first worker's fixes it.
    DATASET: optionalStringVar("the dataset every worker must train (the workers' DATASET)"),
    MODEL: optionalStringVar("the model every worker must train (the workers' MODEL)"),
    SEED: optionalIntVar({ min: 0, max: 2 ** 31 - 1 }, "the workers' SEED"),
    BATCH_SIZE: optionalIntVar({ min: 1, max: 65_536 }, "the workers' BATCH_SIZE"),
    EPOCHS: optionalIntVar({ min: 1, max: 10_000 }, "the workers' EPOCHS"),
    TRAIN_EXAMPLES: optionalIntVar({ min: 1, max: 10_000_000 }, "the workers' training examples"),
    LOCAL_STEPS: optionalIntVar({ min: 1, max: 1_000 }, "the workers' LOCAL_STEPS"),
    // Threads that apply a parameter update together (this one and helpers): one per core, at most 4.
    STEP_THREADS: intVar({ min: 1, max: 16, default: Math.min(4, availableParallelism()) }),
    // Largest chunk payload either way. The default leaves 16 KiB of a 4 MiB message for the rest
    // of it: gRPC clients refuse messages over 4 MiB unless configured otherwise.
    MAX_CHUNK_BYTES: intVar({ min: 1024, max: 64 << 20, default: (4 << 20) - MESSAGE_RESERVE_BYTES }),
    MAX_MODEL_ELEMENTS: intVar({ min: 1, max: 1_000_000_000, default: 100_000_000 }),
    MAX_TENSORS: intVar({ min: 1, max: 1_000_000, default: 10_000 }),
    EXIT_ON_COMPLETE: boolVar(true),
    // Sharded servers: this server is shard SHARD_INDEX of the shards listed (shard 0 first).
    SHARD_INDEX: intVar({ min: 0, max: 255, default: 0 }),
    SHARD_ADDRESSES: z
      .preprocess(
        (v) => (typeof v === "string" && v.trim() !== "" ? v.split(",").map((a) => a.trim()) : undefined),
        z.array(z.string().regex(ADDRESS, "expected host:port")).min(1).max(256).optional(),
      )
      .describe("comma-separated host:port of every shard in index order (unset: this server is the only shard)"),
    CHECKPOINT_URI: optionalStringVar("a local directory or s3://bucket/prefix"),
    CHECKPOINT_EVERY_STEPS: intVar({ min: 0, max: 1e9, default: 500 }),
    CHECKPOINT_EVERY_SECONDS: intVar({ min: 0, max: 86_400, default: 300 }),
    CHECKPOINT_KEEP: intVar({ min: 1, max: 1000, default: 3 }),
    EXPORT_URI: optionalStringVar("a local directory or s3://bucket/prefix"),
    S3_ENDPOINT: optionalStringVar("the URL of an S3-compatible server (leave unset for AWS)"),
    AUTH_TOKEN: z
      .preprocess((v) => (typeof v === "string" && v.trim() === "" ? undefined : v), z.string().min(16, "at least 16 characters").optional())
      .describe("a shared secret of at least 16 characters (unset: no authentication)"),
    TLS_CERT_FILE: optionalStringVar("the path of a PEM certificate (with TLS_KEY_FILE: serve gRPC over TLS)"),
    TLS_KEY_FILE: optionalStringVar("the path of the PEM private key for TLS_CERT_FILE"),
    ECS_CLUSTER: optionalStringVar("the ECS cluster name (set by the Terraform task definition)"),
    SERVER_SERVICE: optionalStringVar("the server's ECS service name"),
    WORKER_SERVICE: optionalStringVar("the workers' ECS service name"),
    // Elastic workers on ECS: how often the server reads the worker service's desired count.
    WORKER_COUNT_POLL_MS: intVar({ min: 100, max: 3_600_000, default: 15_000 }),
    STATUS_INTERVAL_MS: intVar({ min: 0, max: 3_600_000, default: 5_000 }),
    // Dashboard, /metrics and /healthz on a separate HTTP/1.1 listener (browsers cannot speak h2c).
    DASHBOARD_ENABLED: boolVar(true),
    DASHBOARD_PORT: intVar({ min: 0, max: 65535, default: 8080 }),
    DASHBOARD_HOST: optionalStringVar("an interface address for the dashboard (default: SERVER_HOST)"),
    // CloudWatch Embedded Metric Format lines on stdout every STATUS_INTERVAL_MS.
    METRICS_EMF: boolVar(false),
    METRICS_EMF_NAMESPACE: stringVar("a CloudWatch namespace", "DistributedPS"),
    LOG_FORMAT: enumVar(["text", "json"], "text"),
    LOG_LEVEL: enumVar(["debug", "info", "warn", "error"], "info"),
  })
  .superRefine((c, ctx) => {
    if ((c.TLS_CERT_FILE === undefined) !== (c.TLS_KEY_FILE === undefined)) {
      const missing = c.TLS_CERT_FILE === undefined ? "TLS_CERT_FILE" : "TLS_KEY_FILE";
      ctx.addIssue({ code: "custom", path: [missing], message: "TLS needs both TLS_CERT_FILE and TLS_KEY_FILE", params: CROSS_FIELD });
    }
    const shards = c.SHARD_ADDRESSES?.length ?? 1;
    if (c.SHARD_INDEX >= shards) {
      ctx.addIssue({ code: "custom", path: ["SHARD_INDEX"], message: `must be below the number of SHARD_ADDRESSES (${shards})`, params: CROSS_FIELD });
    }
    if (c.LR_SCHEDULE === "cosine" && c.LR_MIN > c.LEARNING_RATE) {
      ctx.addIssue({ code: "custom", path: ["LR_MIN"], message: `must not exceed LEARNING_RATE (${c.LEARNING_RATE})`, params: CROSS_FIELD });
    }
  });

export type ServerEnv = z.output<typeof serverEnvSchema>;

/** What each variable means (docs/configuration.md is made from the schema and this; see common/src/config-reference.ts). */
export const serverEnvDocs: ConfigDocs<typeof serverEnvSchema> = {
  SERVER_HOST: { meaning: "Interface to listen on" },
  SERVER_PORT: { meaning: "Port for gRPC (0 = any free port)" },
  TOTAL_WORKERS_EXPECTED: { meaning: "Number of worker slots at the start (`make scale`, or the ECS worker service's desired count, changes it)" },
  SERVER_MODE: { meaning: "How gradients are applied: `sync` averages one gradient from every worker per step, `async` applies each as it arrives, `ssp` as it arrives with workers at most `STALENESS_BOUND` steps apart" },
  STALENESS_BOUND: { meaning: "SSP: how many steps a worker may run ahead of the slowest" },
  MAX_STALENESS: { meaning: "Async/SSP: oldest gradient (in versions) still applied" },
  OPTIMIZER: { meaning: "The update rule the server applies to the aggregated gradient" },
  LEARNING_RATE: { meaning: "Base learning rate" },
  MOMENTUM: { meaning: "Momentum coefficient, for `momentum`" },
  NESTEROV: { meaning: "Nesterov momentum, for `momentum`" },
  ADAM_BETA1: { meaning: "First-moment decay, for `adam`" },
  ADAM_BETA2: { meaning: "Second-moment decay, for `adam`" },
  ADAM_EPSILON: { meaning: "Denominator term, for `adam`" },
  WEIGHT_DECAY: { meaning: "L2 for sgd/momentum; decoupled (AdamW) for adam" },
  LR_SCHEDULE: { meaning: "How the learning rate changes with the updates applied (after `LR_WARMUP_STEPS`)" },
  LR_STEP_SIZE: { meaning: "`step` schedule: multiply the rate by `LR_GAMMA` every this many updates" },
  LR_GAMMA: { meaning: "`step` schedule: the factor" },
  LR_DECAY_STEPS: { meaning: "`cosine` schedule: anneal to `LR_MIN` over this many updates" },
  LR_MIN: { meaning: "`cosine` schedule: the rate it ends at" },
  LR_WARMUP_STEPS: { meaning: "Linear warm-up updates before the schedule" },
  LEASE_MS: { meaning: "A worker silent this long is gone; workers heartbeat every quarter of it" },
  START_TIMEOUT_MS: { meaning: "How long to wait for all workers before starting with those present" },
  SYNC_TIMEOUT_MS: { meaning: "Straggler bound: a sync step (or SSP wait) never waits longer" },
  WAIT_TIMEOUT_MS: { meaning: "Bound on one blocking call (waiting for parameters or a version)" },
  REPLACEMENT_GRACE_MS: { meaning: "How long a slot whose worker is gone (lease ran out, or it left) waits for a replacement before its data goes to the other workers; a new or restored slot waits a lease longer" },
  NO_WORKERS_TIMEOUT_MS: { meaning: "With no live worker for this long, an unfinished run checkpoints and exits 3 (a restart on the same `CHECKPOINT_URI` continues)" },
  MAX_CONNECTIONS: { meaning: "Connections open at once, from any client in any state; more are closed as they are accepted (one warning per 10 s)" },
  MAX_STREAMS_PER_CONNECTION: { meaning: "Calls in flight on one connection (HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`); clients queue calls beyond it, a client that ignores it is refused (`REFUSED_STREAM`) or disconnected" },
  STREAM_IDLE_TIMEOUT_MS: { meaning: "A call whose client sends nothing more of its request, or reads none of the answer, for this long is reset (`CANCELLED`); a call the server is still answering (sync barrier, long polls) never counts as idle" },
  CONNECTION_IDLE_TIMEOUT_MS: { meaning: "A connection with no call in flight for this long is closed (GOAWAY), including one that never speaks HTTP/2 or never finishes its TLS handshake; keep it above `LEASE_MS`/4 so heartbeat connections stay open" },
  DATASET: { meaning: "The run's identity: a worker whose own `DATASET` differs is refused at registration, whoever registers first. Unset: the first worker's fixes it" },
  MODEL: { meaning: "The run's identity: a worker whose own `MODEL` differs is refused at registration, whoever registers first. Unset: the first worker's fixes it" },
  SEED: { meaning: "The run's identity: a worker whose own `SEED` differs is refused at registration, whoever registers first. Unset: the first worker's fixes it" },
  BATCH_SIZE: { meaning: "The run's identity: a worker whose own `BATCH_SIZE` differs is refused at registration, whoever registers first. Unset: the first worker's fixes it" },
  EPOCHS: { meaning: "The run's identity: a worker whose own `EPOCHS` differs is refused at registration, whoever registers first. Unset: the first worker's fixes it" },
  TRAIN_EXAMPLES: { meaning: "The run's identity: a worker whose own `TRAIN_EXAMPLES` differs is refused at registration, whoever registers first. Unset: the first worker's fixes it" },
  LOCAL_STEPS: { meaning: "The run's identity: a worker whose own `LOCAL_STEPS` differs is refused at registration, whoever registers first. Unset: the first worker's fixes it" },
  STEP_THREADS: { meaning: "Threads that apply each parameter update together (1: the server's thread alone); see docs/performance.md", default: "cores, at most 4" },
  MAX_CHUNK_BYTES: { meaning: "Largest tensor chunk payload sent or accepted (a larger pushed chunk is refused); the default keeps every message within gRPC clients' default 4 MiB receive limit, and a client with a smaller one sets `max_message_bytes` in its pull", default: "`4177920` (4 MiB − 16 KiB)" },
  MAX_MODEL_ELEMENTS: { meaning: "Most parameters (elements) initialisation may upload" },
  MAX_TENSORS: { meaning: "Most tensors initialisation may upload" },
  EXIT_ON_COMPLETE: { meaning: "Exit 0 once every worker has finished" },
  SHARD_INDEX: { meaning: "Sharded servers: this server is shard `SHARD_INDEX` of `SHARD_ADDRESSES`" },
  SHARD_ADDRESSES: { meaning: "Sharded servers: every shard's `host:port`, comma-separated, shard 0 first (as workers reach them); unset = the only server" },
  CHECKPOINT_URI: { meaning: "Where checkpoints go: a local directory or `s3://bucket/prefix`; unset = no checkpoints" },
  CHECKPOINT_EVERY_STEPS: { meaning: "Checkpoint every this many updates (0 = never by this rule); also on SIGTERM and at the end" },
  CHECKPOINT_EVERY_SECONDS: { meaning: "Checkpoint every this many seconds (0 = never by this rule)" },
  CHECKPOINT_KEEP: { meaning: "Checkpoints kept; older ones are deleted" },
  EXPORT_URI: { meaning: "Where the trained model goes at the end (`model.safetensors`, `model.onnx`, `model.json`)", default: "`$CHECKPOINT_URI/final`" },
  S3_ENDPOINT: { meaning: "An S3-compatible endpoint for `s3://` destinations (MinIO, s3rver)", default: "AWS" },
  AUTH_TOKEN: { meaning: "Shared secret (16+ characters) every RPC must carry as a bearer token (`Bearer <token>`, as gRPC call credentials send it)" },
  TLS_CERT_FILE: { meaning: "Serve gRPC over TLS with this PEM certificate (with `TLS_KEY_FILE`)" },
  TLS_KEY_FILE: { meaning: "The PEM private key of `TLS_CERT_FILE`" },
  ECS_CLUSTER: { meaning: "Set on ECS: the cluster; the worker count follows the worker service's desired count, and at the end the job scales its services to zero" },
  SERVER_SERVICE: { meaning: "Set on ECS: the server's service, scaled to zero at the end" },
  WORKER_SERVICE: { meaning: "Set on ECS: the workers' service, whose desired count is the run's worker count" },
  WORKER_COUNT_POLL_MS: { meaning: "On ECS: how often to read the worker service's desired count" },
  STATUS_INTERVAL_MS: { meaning: "Progress line period (0 = off); also the EMF period" },
  DASHBOARD_ENABLED: { meaning: "Serve the dashboard, `/metrics` and `/healthz` on a second, HTTP/1.1 port" },
  DASHBOARD_PORT: { meaning: "Its port (0 = any free port); if it cannot be bound the server warns and trains on" },
  DASHBOARD_HOST: { meaning: "Its interface", default: "`SERVER_HOST`" },
  METRICS_EMF: { meaning: "Write CloudWatch Embedded Metric Format lines to stdout every `STATUS_INTERVAL_MS` (the ECS task sets `true`)" },
  METRICS_EMF_NAMESPACE: { meaning: "Their CloudWatch namespace" },
  LOG_FORMAT: { meaning: "`json`: one JSON object per log line" },
  LOG_LEVEL: { meaning: "The least severe log lines printed (`debug` adds a line per call)" },
};

/** Where this server stands among the shards. */
export function shardLayout(c: Pick<ServerEnv, "SHARD_INDEX" | "SHARD_ADDRESSES">): ShardLayout {
  return { index: c.SHARD_INDEX, addresses: c.SHARD_ADDRESSES };
}

/** What the training run takes from the configuration (run/run-options.ts). */
export function runOptionsFrom(c: ServerEnv): RunOptions {
  return {
    mode: c.SERVER_MODE,
    workers: c.TOTAL_WORKERS_EXPECTED,
    epochs: c.EPOCHS,
    identity: configuredIdentity(c),
    leaseMs: c.LEASE_MS,
    replacementGraceMs: c.REPLACEMENT_GRACE_MS,
    startTimeoutMs: c.START_TIMEOUT_MS,
    waitTimeoutMs: c.WAIT_TIMEOUT_MS,
    syncTimeoutMs: c.SYNC_TIMEOUT_MS,
    noWorkersTimeoutMs: c.NO_WORKERS_TIMEOUT_MS,
    maxStaleness: c.MAX_STALENESS,
    stalenessBound: c.STALENESS_BOUND,
    stepThreads: c.STEP_THREADS,
    maxChunkBytes: c.MAX_CHUNK_BYTES,
    maxTensors: c.MAX_TENSORS,
    maxModelElements: c.MAX_MODEL_ELEMENTS,
    shard: shardLayout(c),
    optimizer: {
      kind: c.OPTIMIZER,
      weightDecay: c.WEIGHT_DECAY,
      momentum: c.MOMENTUM,
      nesterov: c.NESTEROV,
      beta1: c.ADAM_BETA1,
      beta2: c.ADAM_BETA2,
      epsilon: c.ADAM_EPSILON,
      schedule: {
        kind: c.LR_SCHEDULE,
        lr: c.LEARNING_RATE,
        stepSize: c.LR_STEP_SIZE,
        gamma: c.LR_GAMMA,
        decaySteps: c.LR_DECAY_STEPS,
        minLr: c.LR_MIN,
        warmupSteps: c.LR_WARMUP_STEPS,
      },
    },
  };
}
