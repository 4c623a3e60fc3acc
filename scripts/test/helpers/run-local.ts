/**
 * One `make test-local` run (scripts/run-local.ts: a real server process and real worker processes
 * over loopback gRPC) for the end-to-end tests: its exit code, its whole output, and its RUN_JSON
 * summary line.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const script = fileURLToPath(new URL("../../run-local.ts", import.meta.url));

export interface RunLocalResult {
  code: number | null;
  output: string;
  run: { mode: string; workers: number; wall_time_s: number; final_test_accuracy: number; passed: boolean } | undefined;
}

/** Runs a job with `env` (results under `dir`), progress and status lines kept out of the output. */
export function runLocal(env: Record<string, string>, dir: string): Promise<RunLocalResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script], {
      env: { ...process.env, RESULTS_DIR: dir, PROGRESS_INTERVAL_MS: "60000", STATUS_INTERVAL_MS: "0", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.once("exit", (code) => {
      const line = /^RUN_JSON: (.*)$/m.exec(output);
      resolve({ code, output, run: line ? JSON.parse(line[1]!) : undefined });
    });
  });
}
