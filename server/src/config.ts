/**
 * The server's configuration, read from the environment (see the README's table).
 */
import { availableParallelism } from "node:os";
import { z } from "zod";
import { MESSAGE_RESERVE_BYTES } from "@distributed-ps/common/tensor-stream.ts";
import { boolVar, CROSS_FIELD, enumVar, intVar, numberVar, optionalIntVar, optionalStringVar, stringVar } from "@distributed-ps/common/env.ts";

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
