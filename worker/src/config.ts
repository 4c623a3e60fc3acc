/**
 * The worker's configuration, read from the environment (see the README's table).
 */
import { z } from "zod";
import { addressVar, enumVar, intVar, numberVar, stringVar } from "@distributed-ps/common/env.ts";

export const workerEnvSchema = z.object({
  PARAMETER_SERVER_ADDRESS: addressVar("localhost:8000"),
  DATASET: enumVar(["synthetic"], "synthetic"),
  MODEL: enumVar(["mlp"], "mlp"),
  BATCH_SIZE: intVar({ min: 1, max: 65_536, default: 32 }),
  EPOCHS: intVar({ min: 1, max: 10_000, default: 5 }),
  LOCAL_STEPS: intVar({ min: 1, max: 1_000, default: 1 }),
  SEED: intVar({ min: 0, max: 2 ** 31 - 1, default: 42 }),
  TRAIN_EXAMPLES: intVar({ min: 100, max: 10_000_000, default: 16_000 }),
  TEST_EXAMPLES: intVar({ min: 100, max: 1_000_000, default: 4_000 }),
  WORKER_SLOT: intVar({ min: -1, max: 1023, default: -1 }),
  TF_BACKEND: enumVar(["wasm", "cpu"], "wasm"),
  CONNECT_TIMEOUT_MS: intVar({ min: 100, max: 86_400_000, default: 120_000 }),
  RPC_TIMEOUT_MS: intVar({ min: 100, max: 86_400_000, default: 900_000 }),
  PROGRESS_INTERVAL_MS: intVar({ min: 100, max: 3_600_000, default: 2_000 }),
  WORKER_LABEL: stringVar("a short label for logs and status", `pid ${process.pid}`),
  LOG_LEVEL: enumVar(["debug", "info", "warn", "error"], "info"),
});

export type WorkerEnv = z.output<typeof workerEnvSchema>;
