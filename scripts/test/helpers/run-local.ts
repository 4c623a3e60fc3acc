/**
 * One `make test-local` run (scripts/run-local.ts: a real server process and real worker processes
 * over loopback gRPC) for the end-to-end tests: its exit code, its whole output, its RUN_JSON
 * summary line and every worker's METRICS_JSON.
 */
import { runNode } from "../../../test/helpers/processes.ts";

export interface WorkerMetrics {
  final_test_accuracy: number;
  final_test_loss: number;
}

export interface RunLocalResult {
  code: number;
  output: string;
  run: { mode: string; workers: number; wall_time_s: number; final_test_accuracy: number; passed: boolean } | undefined;
  workers: WorkerMetrics[];
}

/** Runs a job with `env` (results under `dir`), progress and status lines kept out of the output. */
export async function runLocal(env: Record<string, string>, dir: string): Promise<RunLocalResult> {
  const { code, output } = await runNode("scripts/run-local.ts", { env: { RESULTS_DIR: dir, PROGRESS_INTERVAL_MS: "60000", STATUS_INTERVAL_MS: "0", ...env } });
  const line = /^RUN_JSON: (.*)$/m.exec(output);
  const workers = [...output.matchAll(/^worker-\d+ \| METRICS_JSON: (.*)$/gm)].map((m) => JSON.parse(m[1]!) as WorkerMetrics);
  return { code, output, run: line ? JSON.parse(line[1]!) : undefined, workers };
}
