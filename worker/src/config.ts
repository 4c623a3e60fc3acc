/**
 * The worker's configuration, read from the environment (see the README's table).
 */
import { z } from "zod";
import { homedir } from "node:os";
import { join } from "node:path";
import { addressVar, enumVar, intVar, numberVar, optionalIntVar, optionalStringVar, stringVar, boolVar } from "@distributed-ps/common/env.ts";

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
