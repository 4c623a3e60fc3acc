/**
 * Real server and worker processes for fault tests: spawned with Node, their output captured line
 * by line, METRICS_JSON records parsed, and every process killed at teardown.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { Test } from "tap";

const root = fileURLToPath(new URL("../../", import.meta.url));

export interface Proc {
  child: ChildProcess;
  lines: string[];
  /** Resolves with the exit code (128 + n for a signal). */
  exit: Promise<number>;
  /** Resolves with the first line matching `re` (rejects after `timeoutMs`, or if the process exits first). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  metrics(): Record<string, unknown> | undefined;
}

export { freePort } from "../../scripts/lib/free-port.ts";

const SIGNALS: Record<string, number> = { SIGKILL: 9, SIGTERM: 15, SIGINT: 2 };

/** `o.wrap`: a command prefix that runs Node, e.g. `["ip", "netns", "exec", "ns1"]` (it must exec, so the pid is Node's). */
export function startProcess(t: Test, script: "server/src/main.ts" | "worker/src/main.ts", env: Record<string, string>, o: { wrap?: readonly string[] } = {}): Proc {
  const [command, ...args] = [...(o.wrap ?? []), process.execPath, root + script];
  const child = spawn(command!, args, {
    cwd: root,
    env: { ...process.env, LOG_LEVEL: "info", STATUS_INTERVAL_MS: "0", PROGRESS_INTERVAL_MS: "500", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  t.teardown(() => void child.kill("SIGKILL"));
  const lines: string[] = [];
  const watchers = new Set<(line: string) => void>();
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on("line", (line) => {
      lines.push(line);
      for (const w of watchers) w(line);
    });
  }
  const exit = new Promise<number>((res) => child.once("exit", (code, signal) => res(code ?? 128 + (SIGNALS[signal ?? ""] ?? 0))));
  return {
    child,
    lines,
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
