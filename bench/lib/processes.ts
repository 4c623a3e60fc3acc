/**
 * Child processes for the benchmark: Node scripts of this repository started with the same Node,
 * their output kept line by line, one tagged JSON line parsed, and every process bounded in time.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { connect } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export interface Child {
  name: string;
  child: ChildProcess;
  pid: number;
  lines: string[];
  /** Resolves with the exit code (128 + signal number for a signal). */
  exit: Promise<number>;
  waitFor(re: RegExp, timeoutMs: number): Promise<string>;
  /** The JSON after the last line starting with `tag` (e.g. "BENCH_WORKER: "), if any. */
  record<T>(tag: string): T | undefined;
  /** The last lines of output, for error messages. */
  tail(n?: number): string;
  kill(signal?: NodeJS.Signals): void;
}

const SIGNALS: Record<string, number> = { SIGKILL: 9, SIGTERM: 15, SIGINT: 2 };
const live = new Set<ChildProcess>();

// Never leave a child behind, whatever way the benchmark ends (Ctrl-C included).
process.once("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(128 + (SIGNALS[signal] ?? 0)));

/** Starts `node [nodeArgs] ROOT/script args` with `env` added to this process's environment. */
export function startNode(name: string, script: string, args: readonly string[], env: Record<string, string> = {}, nodeArgs: readonly string[] = []): Child {
  const child = spawn(process.execPath, [...nodeArgs, ROOT + script, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (child.pid === undefined) throw new Error(`${name}: could not start ${script}`);
  live.add(child);
  const lines: string[] = [];
  const watchers = new Set<(line: string) => void>();
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on("line", (line) => {
      lines.push(line);
      if (lines.length > 5000) lines.splice(0, 1000); // bounded, whatever a process prints
      for (const w of watchers) w(line);
    });
  }
  const exit = new Promise<number>((res) =>
    child.once("exit", (code, signal) => {
      live.delete(child);
      res(code ?? 128 + (SIGNALS[signal ?? ""] ?? 0));
    }),
  );
  const tail = (n = 15) => lines.slice(-n).join("\n");
  return {
    name,
    child,
    pid: child.pid,
    lines,
    exit,
    tail,
    kill: (signal = "SIGKILL") => void child.kill(signal),
    waitFor(re, timeoutMs) {
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
        const timer = setTimeout(() => done(() => reject(new Error(`${name}: no line matching ${re} within ${timeoutMs} ms; last lines:\n${tail()}`))), timeoutMs);
        watchers.add(watch);
        void exit.then((code) => done(() => reject(new Error(`${name} exited (${code}) before a line matching ${re}; last lines:\n${tail()}`))));
      });
    },
    record<T>(tag: string): T | undefined {
      const line = [...lines].reverse().find((l) => l.startsWith(tag));
      return line === undefined ? undefined : (JSON.parse(line.slice(tag.length)) as T);
    },
  };
}

/** Resolves with the exit code, or kills the process and rejects after `ms`. */
export async function exitWithin(p: Child, ms: number): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, rej) => {
    timer = setTimeout(() => {
      p.kill();
      rej(new Error(`${p.name} still running after ${ms} ms (killed); last lines:\n${p.tail()}`));
    }, ms);
  });
  try {
    return await Promise.race([p.exit, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export { freePort } from "../../scripts/lib/free-port.ts";

/** Resolves once `port` on 127.0.0.1 accepts connections; rejects if `p` exits first or after `timeoutMs`. */
export async function waitForPort(p: Child, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited: number | undefined;
  void p.exit.then((code) => (exited = code));
  for (;;) {
    const open = await new Promise<boolean>((res) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        res(true);
      });
      s.once("error", () => res(false));
    });
    if (open) return;
    if (exited !== undefined) throw new Error(`${p.name} exited (${exited}) before listening; last lines:\n${p.tail()}`);
    if (Date.now() > deadline) throw new Error(`${p.name}: port ${port} not open within ${timeoutMs} ms; last lines:\n${p.tail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
