/**
 * A Node script of this repository as a child process — the one harness the tests
 * (test/helpers/processes.ts) and the benchmark (bench/lib/processes.ts) build on: started with this
 * Node, its output kept line by line from both streams, waits on a line or on the exit, and tagged
 * JSON lines (METRICS_JSON, the benchmark's records) parsed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** The repository's root, with a trailing slash. */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export interface NodeProcess {
  /** For messages: the script's name unless given. */
  name: string;
  child: ChildProcess;
  pid: number;
  /** Every line so far, stdout and stderr as they came (the oldest dropped past `maxLines`). */
  lines: string[];
  /** The same, each stream's apart. */
  stdout: string[];
  stderr: string[];
  /** The lines so far as one text. */
  output(): string;
  /** The last lines, for error messages. */
  tail(n?: number): string;
  /** Resolves with the exit code (128 + n for a signal), once both streams are read to their end. */
  exit: Promise<number>;
  /** Resolves with the first line matching `re` (rejects after `timeoutMs`, or if the process exits first). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  /** The JSON after the last line starting with `tag` (e.g. "METRICS_JSON: "), if any. */
  record<T>(tag: string): T | undefined;
  kill(signal?: NodeJS.Signals): void;
}

export interface NodeOptions {
  name?: string;
  /** Arguments after the script. */
  args?: readonly string[];
  /** Added to this process's environment (`inheritEnv: false`: the whole environment). */
  env?: Record<string, string>;
  inheritEnv?: boolean;
  /** Node's own flags, before the script. */
  nodeArgs?: readonly string[];
  /** A command prefix that runs Node, e.g. `["ip", "netns", "exec", "ns1"]` (it must exec, so the pid is Node's). */
  wrap?: readonly string[];
  /** Lines kept (a process may print without end); default: all. */
  maxLines?: number;
}

const SIGNALS: Record<string, number> = { SIGKILL: 9, SIGTERM: 15, SIGINT: 2 };

/** Starts `node [nodeArgs] ROOT/script [args]`. */
export function startNode(script: string, o: NodeOptions = {}): NodeProcess {
  const name = o.name ?? script;
  const [command, ...args] = [...(o.wrap ?? []), process.execPath, ...(o.nodeArgs ?? []), ROOT + script, ...(o.args ?? [])];
  const child = spawn(command!, args, {
    cwd: ROOT,
    env: o.inheritEnv === false ? o.env : { ...process.env, ...o.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (child.pid === undefined) throw new Error(`${name}: could not start ${script}`);
  const lines: string[] = [];
  const own = { stdout: [] as string[], stderr: [] as string[] };
  const watchers = new Set<(line: string) => void>();
  const maxLines = o.maxLines ?? Infinity;
  for (const stream of ["stdout", "stderr"] as const) {
    createInterface({ input: child[stream]! }).on("line", (line) => {
      lines.push(line);
      own[stream].push(line);
      if (lines.length > maxLines) lines.splice(0, Math.ceil(maxLines / 5));
      if (own[stream].length > maxLines) own[stream].splice(0, Math.ceil(maxLines / 5));
      for (const w of watchers) w(line);
    });
  }
  // "exit" may come before the last lines are read: "close" waits for both streams to end.
  const exit = new Promise<number>((res) => child.once("close", (code, signal) => res(code ?? 128 + (SIGNALS[signal ?? ""] ?? 0))));
  const tail = (n = 15) => lines.slice(-n).join("\n");
  return {
    name,
    child,
    pid: child.pid,
    lines,
    ...own,
    output: () => lines.join("\n"),
    tail,
    exit,
    kill: (signal = "SIGKILL") => void child.kill(signal),
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
export async function exitWithin(p: NodeProcess, ms: number): Promise<number> {
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
