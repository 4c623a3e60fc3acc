/**
 * The one way tests run the repository's programs as real processes: any Node script of the
 * repository, its output captured line by line from both streams, waits on a line or on the exit,
 * METRICS_JSON records parsed, and the process killed at the test's teardown.
 *
 * `startProcess` is for the server and the worker (quiet status lines, progress every 500 ms);
 * `startNode` for any other script; `runNode` runs one to its end.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { Test } from "tap";

/** The repository's root, with a trailing slash. */
export const root = fileURLToPath(new URL("../../", import.meta.url));

export interface Proc {
  child: ChildProcess;
  /** Every line written so far, stdout and stderr as they came. */
  lines: string[];
  /** The same, each stream's apart. */
  stdout: string[];
  stderr: string[];
  /** The lines so far as one text. */
  output(): string;
  /** Resolves with the exit code (128 + n for a signal). */
  exit: Promise<number>;
  /** Resolves with the first line matching `re` (rejects after `timeoutMs`, or if the process exits first). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  /** The last METRICS_JSON record, if any. */
  metrics(): Record<string, unknown> | undefined;
}

export interface NodeOptions {
  /** Arguments after the script. */
  args?: readonly string[];
  /** Added to this process's environment (`inheritEnv: false`: the whole environment). */
  env?: Record<string, string>;
  inheritEnv?: boolean;
  /** Node's own flags, before the script. */
  nodeArgs?: readonly string[];
  /** A command prefix that runs Node, e.g. `["ip", "netns", "exec", "ns1"]` (it must exec, so the pid is Node's). */
  wrap?: readonly string[];
}

export { freePort } from "../../scripts/lib/free-port.ts";

const SIGNALS: Record<string, number> = { SIGKILL: 9, SIGTERM: 15, SIGINT: 2 };

/** The server or the worker, with `env` on top of the test defaults. */
export function startProcess(t: Test, script: "server/src/main.ts" | "worker/src/main.ts", env: Record<string, string>, o: { wrap?: readonly string[] } = {}): Proc {
  return startNode(t, script, { env: { LOG_LEVEL: "info", STATUS_INTERVAL_MS: "0", PROGRESS_INTERVAL_MS: "500", ...env }, ...o });
}

/** Any Node script of the repository (`script`: its path from the root), killed at `t`'s teardown. */
export function startNode(t: Test | undefined, script: string, o: NodeOptions = {}): Proc {
  const [command, ...args] = [...(o.wrap ?? []), process.execPath, ...(o.nodeArgs ?? []), root + script, ...(o.args ?? [])];
  const child = spawn(command!, args, {
    cwd: root,
    env: o.inheritEnv === false ? o.env : { ...process.env, ...o.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  t?.teardown(() => void child.kill("SIGKILL"));
  const lines: string[] = [];
  const own = { stdout: [] as string[], stderr: [] as string[] };
  const watchers = new Set<(line: string) => void>();
  for (const name of ["stdout", "stderr"] as const) {
    createInterface({ input: child[name]! }).on("line", (line) => {
      lines.push(line);
      own[name].push(line);
      for (const w of watchers) w(line);
    });
  }
  // "exit" may come before the last lines are read: "close" waits for both streams to end.
  const exit = new Promise<number>((res) => child.once("close", (code, signal) => res(code ?? 128 + (SIGNALS[signal ?? ""] ?? 0))));
  return {
    child,
    lines,
    ...own,
    output: () => lines.join("\n"),
    exit,
    waitFor(re, timeoutMs = 30_000) {
      const seen = lines.find((l) => re.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const done = (fn: () => void) => {
          clearTimeout(timer);
          watchers.delete(watch);
          fn();
        };
        const watch = (line: string) => {
          if (re.test(line)) done(() => resolve(line));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`no line matching ${re} within ${timeoutMs} ms; last lines:\n${lines.slice(-15).join("\n")}`))), timeoutMs);
        watchers.add(watch);
        void exit.then((code) => done(() => reject(new Error(`process exited (${code}) before a line matching ${re}; last lines:\n${lines.slice(-15).join("\n")}`))));
      });
    },
    metrics() {
      const line = [...lines].reverse().find((l) => l.startsWith("METRICS_JSON: "));
      return line === undefined ? undefined : (JSON.parse(line.slice("METRICS_JSON: ".length)) as Record<string, unknown>);
    },
  };
}

/** Runs a script to its end: its exit code and output (killed, and rejected, after `timeoutMs`). */
export async function runNode(script: string, o: NodeOptions & { timeoutMs?: number } = {}): Promise<{ code: number; output: string; lines: string[] }> {
  const p = startNode(undefined, script, o);
  try {
    const code = await exitWithin(p, o.timeoutMs ?? 600_000);
    return { code, output: p.output(), lines: p.lines };
  } finally {
    p.child.kill("SIGKILL");
  }
}

/** Resolves with the exit code, or rejects if the process is still running after `ms`. */
export async function exitWithin(p: Proc, ms: number): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`still running after ${ms} ms; last lines:\n${p.lines.slice(-15).join("\n")}`)), ms);
  });
  try {
    return await Promise.race([p.exit, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
