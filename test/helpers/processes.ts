/**
 * The one way tests run the repository's programs as real processes (scripts/lib/node-process.ts),
 * each killed at its test's teardown: `startProcess` for the server and the worker (status lines
 * off, progress every 500 ms), `startNode` for any other script, `runNode` to run one to its end.
 */
import type { Test } from "tap";
import { freePort } from "../../scripts/lib/free-port.ts";
import { exitWithin, ROOT, startNode as start, type NodeOptions, type NodeProcess } from "../../scripts/lib/node-process.ts";

export { exitWithin, freePort, ROOT, type NodeOptions };

export interface Proc extends NodeProcess {
  /** The last METRICS_JSON record, if any. */
  metrics(): Record<string, unknown> | undefined;
}

/** A server's environment on a free loopback port (`env` on top), and that port. */
export async function onLoopback(env: Record<string, string>): Promise<{ port: number; env: Record<string, string> }> {
  const port = await freePort();
  return { port, env: { SERVER_HOST: "127.0.0.1", SERVER_PORT: String(port), ...env } };
}

/** The server or the worker, with `env` on top of the test defaults. */
export function startProcess(t: Test, script: "server/src/main.ts" | "worker/src/main.ts", env: Record<string, string>, o: { wrap?: readonly string[] } = {}): Proc {
  return startNode(t, script, { env: { LOG_LEVEL: "info", STATUS_INTERVAL_MS: "0", PROGRESS_INTERVAL_MS: "500", ...env }, ...o });
}

/** Any Node script of the repository (`script`: its path from the root), killed at `t`'s teardown. */
export function startNode(t: Test | undefined, script: string, o: NodeOptions = {}): Proc {
  const p = start(script, o);
  t?.teardown(() => p.kill("SIGKILL"));
  return { ...p, metrics: () => p.record<Record<string, unknown>>("METRICS_JSON: ") };
}

/** Runs a script to its end: its exit code and output (killed, and rejected, after `timeoutMs`). */
export async function runNode(script: string, o: NodeOptions & { timeoutMs?: number } = {}): Promise<{ code: number; output: string; lines: string[] }> {
  const p = start(script, o);
  try {
    const code = await exitWithin(p, o.timeoutMs ?? 600_000);
    return { code, output: p.output(), lines: p.lines };
  } finally {
    p.kill("SIGKILL");
  }
}
