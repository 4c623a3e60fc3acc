/**
 * The worker's configuration, read from the environment (docs/configuration.md lists every variable).
 */
import { z } from "zod";
import { homedir } from "node:os";
import { join } from "node:path";
import { addressVar, enumVar, intVar, numberVar, optionalIntVar, optionalStringVar, stringVar, boolVar } from "@distributed-ps/common/env.ts";
import type { ConfigDocs } from "@distributed-ps/common/config-reference.ts";

export const workerEnvSchema = z.object({
  PARAMETER_SERVER_ADDRESS: addressVar("localhost:8000"),
  DATASET: enumVar(["synthetic", "mnist", "fashion-mnist", "cifar10", "cifar100"], "synthetic"),
  MODEL: enumVar(["mlp", "linear", "cnn", "resnet18"], "mlp"),
  /** Where the dataset's files are instead of their public URLs: http(s)://, s3://bucket/key, or a path. */
  DATASET_URL: optionalStringVar("a URL (http://, https://, s3://bucket/prefix/, file://) or a path to the dataset's files"),
  /** Cache of downloaded datasets. */
  DATA_DIR: stringVar("a directory path", join(homedir(), ".cache", "distributed-ps")),
  /** Checksum override: "skip", one SHA-256 (single-file datasets), or name=sha256,... */
  DATASET_SHA256: optionalStringVar('"skip", a SHA-256 in hex, or file=sha256,file=sha256'),
  /** S3-compatible endpoint (MinIO, s3rver) for s3:// sources; path-style addressing. */
  S3_ENDPOINT: optionalStringVar("an http(s) URL such as http://127.0.0.1:9000"),
  CIFAR100_LABELS: enumVar(["fine", "coarse"], "fine"),
  BATCH_SIZE: intVar({ min: 1, max: 65_536, default: 32 }),
  EPOCHS: intVar({ min: 1, max: 10_000, default: 5 }),
  LOCAL_STEPS: intVar({ min: 1, max: 1_000, default: 1 }),
  PULL_DTYPE: enumVar(["fp32", "fp16", "bf16"], "fp32"),
  PUSH_DTYPE: enumVar(["fp32", "fp16", "bf16"], "fp32"),
  TOPK_RATIO: numberVar({ min: 0, max: 1, default: 0 }),
  SEED: intVar({ min: 0, max: 2 ** 31 - 1, default: 42 }),
  // Synthetic: the dataset's size (default 16000 / 4000). Real datasets: a seeded subset of this
  // size (default: all of it).
  TRAIN_EXAMPLES: optionalIntVar({ min: 100, max: 10_000_000 }, "examples to train on"),
  TEST_EXAMPLES: optionalIntVar({ min: 100, max: 1_000_000 }, "examples to evaluate on"),
  WORKER_SLOT: intVar({ min: -1, max: 1023, default: -1 }),
  /** The compute engine: auto (ONNX Runtime, else tfjs with a warning), onnxruntime, tfjs. */
  WORKER_ENGINE: enumVar(["auto", "onnxruntime", "tfjs"], "auto"),
  /** ONNX Runtime's threads per operator (default: the cores this process may use). */
  ENGINE_THREADS: optionalIntVar({ min: 1, max: 1024 }, "threads for ONNX Runtime"),
  /** tfjs's backend, for the tfjs engine (and for building every model's initial weights). */
  TF_BACKEND: enumVar(["wasm", "cpu"], "wasm"),
  CONNECT_TIMEOUT_MS: intVar({ min: 100, max: 86_400_000, default: 120_000 }),
  RPC_TIMEOUT_MS: intVar({ min: 100, max: 86_400_000, default: 900_000 }),
  PROGRESS_INTERVAL_MS: intVar({ min: 100, max: 3_600_000, default: 2_000 }),
  WORKER_LABEL: stringVar("a short label for logs and status", `pid ${process.pid}`),
  LOG_LEVEL: enumVar(["debug", "info", "warn", "error"], "info"),
  AUTH_TOKEN: optionalStringVar("the server's shared secret"),
  TLS: boolVar(false),
  TLS_CA_FILE: optionalStringVar("a PEM file of the CA that signed the server's certificate (implies TLS)"),
  LOG_FORMAT: enumVar(["text", "json"], "text"),
});

export type WorkerEnv = z.output<typeof workerEnvSchema>;

/** What each variable means (docs/configuration.md is made from the schema and this; see common/src/config-reference.ts). */
export const workerEnvDocs: ConfigDocs<typeof workerEnvSchema> = {
  PARAMETER_SERVER_ADDRESS: { meaning: "host:port of the server" },
  DATASET: { meaning: "What to train on: `synthetic` is built in, seeded, with no download; the others are downloaded and checked (docs/datasets-and-models.md)" },
  MODEL: { meaning: "The model trained (docs/datasets-and-models.md)" },
  DATASET_URL: { meaning: "Another source: `http(s)://` directory or file, `s3://bucket/prefix/`, a local path or `file://`", default: "public URL" },
  DATA_DIR: { meaning: "Download cache", default: "`~/.cache/distributed-ps`" },
  DATASET_SHA256: { meaning: "Checksum override: `skip`, one SHA-256, or `file=sha256,...`", default: "built-in" },
  S3_ENDPOINT: { meaning: "S3-compatible endpoint for `s3://` sources (MinIO, s3rver)", default: "AWS" },
  CIFAR100_LABELS: { meaning: "`fine` (100 classes) or `coarse` (20)" },
  BATCH_SIZE: { meaning: "Examples per gradient" },
  EPOCHS: { meaning: "Passes over the worker's slice" },
  LOCAL_STEPS: { meaning: "Minibatch gradients averaged locally into one push (fewer round trips)" },
  PULL_DTYPE: { meaning: "Element type of pulled parameters on the wire: `fp32`, `fp16` or `bf16` (half the bytes; the server computes in fp32)" },
  PUSH_DTYPE: { meaning: "Element type of pushed gradients on the wire: `fp32`, `fp16` or `bf16`" },
  TOPK_RATIO: { meaning: "Send only this fraction of each gradient tensor (largest magnitudes), keeping the rest as error feedback for later pushes; 0 = dense" },
  SEED: { meaning: "Data, partition and initial weights; must match across workers" },
  TRAIN_EXAMPLES: { meaning: "Size of the synthetic training set; a seeded subset of a real one", default: "`16000` (synthetic), all (real)" },
  TEST_EXAMPLES: { meaning: "Size of the synthetic test set; a seeded subset of a real one", default: "`4000` (synthetic), all (real)" },
  WORKER_SLOT: { meaning: "Preferred slot; -1 takes any free one" },
  WORKER_ENGINE: { meaning: "What computes the model's gradients: `onnxruntime` (ONNX Runtime's CPU library; the worker exits 1 with one line if it cannot load), `tfjs` (TensorFlow.js), or `auto`: ONNX Runtime, else one warning and tfjs. See docs/datasets-and-models.md, \"Compute engines\"" },
  ENGINE_THREADS: { meaning: "ONNX Runtime's threads per operator (`make test-local` gives each worker its share of the cores; Terraform the task's vCPUs)", default: "cores" },
  TF_BACKEND: { meaning: "tfjs's backend, for the tfjs engine: `wasm` (falls back to `cpu` if unavailable) or `cpu`" },
  CONNECT_TIMEOUT_MS: { meaning: "How long to keep retrying (exponential backoff) to register" },
  RPC_TIMEOUT_MS: { meaning: "Deadline of each call (a sync push includes the barrier wait)" },
  PROGRESS_INTERVAL_MS: { meaning: "Progress line and metrics report period" },
  WORKER_LABEL: { meaning: "Name shown in the server's logs and status", default: "`pid <pid>`" },
  LOG_LEVEL: { meaning: "The least severe log lines printed" },
  AUTH_TOKEN: { meaning: "The server's shared secret" },
  TLS: { meaning: "Talk TLS to the server" },
  TLS_CA_FILE: { meaning: "Trust this CA bundle (e.g. of a self-signed certificate); implies `TLS`" },
  LOG_FORMAT: { meaning: "`json`: one JSON object per log line" },
};
