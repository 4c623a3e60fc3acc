/**
 * The training job every chaos run trains, and the settings its server and workers start with.
 *
 * Sizes: TRAIN_EXAMPLES = 19200 = 32 × 600. An epoch is cut into one part per live worker and a
 * part drops its remainder smaller than a batch (worker/src/data/partition.ts), so an epoch trains
 * exactly TRAIN_EXAMPLES only if each part is a whole number of batches: 19200 / (32 × P) is an
 * integer for P = 1..6, and no run has more than 5 worker slots. (9600 trains all 4 epochs in ~3 s
 * with 3 workers on 2 cores, too short for a fault's 0–4 s delays to land inside the run; 19200
 * takes ~6–8 s.)
 */
import { join } from "node:path";
import type { Mode } from "./plan.ts";

export const JOB = {
  dataset: "synthetic",
  model: "mlp",
  batchSize: 32,
  epochs: 4,
  trainExamples: 19_200,
  testExamples: 2_000,
  /** Worker slots at the start (TOTAL_WORKERS_EXPECTED) and worker processes started with the server. */
  workers: 3,
} as const;

/** Gradients a complete run applies: every batch of every epoch exactly once. */
export const TOTAL_GRADIENTS = (JOB.epochs * JOB.trainExamples) / JOB.batchSize;

/**
 * How far below the Bayes-optimal accuracy of its test set a run's exported model may fall and still
 * count as "a model of the expected quality", per mode: the threshold is bayes − shortfall. The
 * synthetic task's Bayes rate depends on the data seed (0.85–0.91), so a fixed accuracy would be
 * strict for hard seeds and lax for easy ones; the shortfall is steadier.
 *
 * Calibrated on undisturbed runs (`make chaos SCENARIO=clean RUNS=60`, 20 per mode, data seeds drawn
 * like every run's): the largest shortfall was sync 0.068, async 0.038, ssp 0.040 (accuracies
 * 0.790–0.868, 0.836–0.875, 0.819–0.883). Each threshold is that plus a margin for what faults
 * legitimately cost. Sync needs the widest: a sync step averages one gradient per worker, so a run
 * scaled up to 5 workers takes fewer, larger steps (480 instead of 800 with 5 workers throughout),
 * which measured shortfalls of 0.098, 0.110 and 0.169 on three seeds (clean: 0.052, 0.054, 0.041).
 * Async and ssp lose nothing measurable with 5 workers; 0.04 covers stale gradients after pauses
 * and restarts (chaos runs at 82ee3de fell short by at most 0.036). A model that lost its training
 * lands far below: untrained, 0.09–0.11.
 */
export const MAX_SHORTFALL: Record<Mode, number> = { sync: 0.2, async: 0.08, ssp: 0.08 };

/** Variables the processes inherit from the harness's environment; everything else is set here.
 *  (WORKER_ENGINE: `make chaos WORKER_ENGINE=tfjs` runs the suite on the other compute engine.) */
const INHERITED = ["PATH", "HOME", "TMPDIR", "LANG", "TZ", "WORKER_ENGINE"];

function baseEnv(): Record<string, string> {
  const env: Record<string, string> = { LOG_FORMAT: "text", LOG_LEVEL: "info" };
  for (const k of INHERITED) if (process.env[k] !== undefined) env[k] = process.env[k]!;
  return env;
}

/** The job's identity, which the server and every worker must agree on. */
function identity(dataSeed: number): Record<string, string> {
  return {
    DATASET: JOB.dataset,
    MODEL: JOB.model,
    SEED: String(dataSeed),
    BATCH_SIZE: String(JOB.batchSize),
    EPOCHS: String(JOB.epochs),
    TRAIN_EXAMPLES: String(JOB.trainExamples),
  };
}

export interface RunPlace {
  dir: string;
  port: number;
  mode: Mode;
  dataSeed: number;
}

export function serverEnv(p: RunPlace): Record<string, string> {
  return {
    ...baseEnv(),
    SERVER_HOST: "127.0.0.1",
    SERVER_PORT: String(p.port),
    TOTAL_WORKERS_EXPECTED: String(JOB.workers),
    SERVER_MODE: p.mode,
    LEASE_MS: "1000",
    REPLACEMENT_GRACE_MS: "1500",
    START_TIMEOUT_MS: "3000",
    NO_WORKERS_TIMEOUT_MS: "20000",
    SYNC_TIMEOUT_MS: "10000",
    WAIT_TIMEOUT_MS: "2000",
    CHECKPOINT_URI: join(p.dir, "checkpoints"),
    CHECKPOINT_EVERY_STEPS: "25",
    CHECKPOINT_EVERY_SECONDS: "1",
    CHECKPOINT_KEEP: "3",
    EXPORT_URI: join(p.dir, "export"),
    DASHBOARD_ENABLED: "false",
    STATUS_INTERVAL_MS: "1000",
    ...identity(p.dataSeed),
  };
}

export function workerEnv(p: RunPlace, label: string): Record<string, string> {
  return {
    ...baseEnv(),
    PARAMETER_SERVER_ADDRESS: `127.0.0.1:${p.port}`,
    ...identity(p.dataSeed),
    TEST_EXAMPLES: String(JOB.testExamples),
    CONNECT_TIMEOUT_MS: "60000",
    PROGRESS_INTERVAL_MS: "500",
    // Several workers share this machine's cores: one ONNX Runtime thread each.
    ENGINE_THREADS: "1",
    WORKER_LABEL: label,
  };
}
