/**
 * The processes of one chaos run: server instances (server-1, server-2 after a restart, ...) and
 * worker processes (chaos-1, chaos-2, ...), each started with Node and common/src/node-flags.ts's
 * flags, its output kept line by line in memory and in `<name>.log`, its exit recorded, and every
 * signal the harness sends remembered, so that an exit is told apart as the harness's doing or the
 * process's own. Every child of every cluster is also in one registry, so that the harness can kill
 * them all when it is interrupted.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { NODE_FLAGS } from "../../../common/src/node-flags.ts";
import { serverEnv, workerEnv, type RunPlace } from "./job.ts";

const root = fileURLToPath(new URL("../../../", import.meta.url));

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Milliseconds since the run started. */
  atMs: number;
}

/** Every child process alive, across clusters: killed with SIGKILL by killEveryChild. */
const everyChild = new Set<ChildProcess>();

/** SIGKILL works on stopped processes too, and nothing can catch it. */
export function killEveryChild(): void {
  for (const child of everyChild) child.kill("SIGKILL");
}

export class ChaosProcess {
  readonly name: string;
  readonly kind: "server" | "worker";
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ExitInfo>;
  exit: ExitInfo | undefined;
  /** Between the harness's SIGSTOP and SIGCONT. */
  paused = false;
  /** The slot it last registered as (a worker's "registered as slot N" line). */
  slot: number | undefined;
  /** Terminating signals the harness sent it. */
  readonly harnessSignals = new Set<NodeJS.Signals>();
  readonly startedAtMs: number;
  readonly #log: WriteStream;

  /** Told every line (the cluster's listeners). */
  readonly #notify: (p: ChaosProcess, line: string) => void;

  constructor(name: string, kind: "server" | "worker", env: Record<string, string>, dir: string, clock: () => number, onLine: (p: ChaosProcess, line: string) => void) {
    this.#notify = onLine;
    this.name = name;
    this.kind = kind;
    this.startedAtMs = clock();
    const script = kind === "server" ? "server/src/main.ts" : "worker/src/main.ts";
    this.child = spawn(process.execPath, [...NODE_FLAGS, join(root, script)], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    everyChild.add(this.child);
    this.#log = createWriteStream(join(dir, `${name}.log`));
    let open = 2;
    const streamsDone = new Promise<void>((res) => {
      for (const stream of [this.child.stdout!, this.child.stderr!]) {
        const rl = createInterface({ input: stream });
        rl.on("line", (line) => this.#onLine(line));
        rl.once("close", () => --open === 0 && res());
      }
    });
    this.exited = new Promise<ExitInfo>((res) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        everyChild.delete(this.child);
        this.exit = { code, signal, atMs: clock() };
        this.paused = false;
        // Read its last lines (METRICS_JSON, a final error) before anyone looks at the exit.
        const bounded = new Promise<void>((r) => setTimeout(r, 2000).unref());
        void Promise.race([streamsDone, bounded]).then(() => {
          this.#log.end();
          res(this.exit!);
        });
      };
      this.child.once("exit", done);
      this.child.once("error", (err) => {
        this.#onLine(`chaos: could not start ${name}: ${err.message}`);
        done(null, null);
      });
    });
  }

  #onLine(line: string): void {
    this.lines.push(line);
    this.#log.write(`${line}\n`);
    const registered = /registered as slot (\d+) of/.exec(line);
    if (registered) this.slot = Number(registered[1]);
    this.#notify(this, line);
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  /** Sends `signal` if the process is still running; returns whether it was. */
  signal(signal: NodeJS.Signals): boolean {
    if (!this.alive) return false;
    if (signal === "SIGKILL" || signal === "SIGTERM") this.harnessSignals.add(signal);
    const sent = this.child.kill(signal);
    if (signal === "SIGSTOP" && sent) this.paused = true;
    if (signal === "SIGCONT" && sent) this.paused = false;
    return sent;
  }

  /**
   * Whether the harness ended it: killed by a signal it sent, or exited (with any code) after the
   * harness's SIGTERM. A process that exited by itself although a signal was on its way is not.
   */
  get endedByHarness(): boolean {
    if (this.exit === undefined) return false;
    if (this.exit.signal !== null) return this.harnessSignals.has(this.exit.signal);
    return this.harnessSignals.has("SIGTERM");
  }

  /** Exited by itself with a non-zero code or an unexpected signal. */
  get failedByItself(): boolean {
    return this.exit !== undefined && !this.endedByHarness && this.exit.code !== 0;
  }

  describeExit(): string {
    if (this.exit === undefined) return "running";
    return this.exit.signal !== null ? `killed by ${this.exit.signal}` : `exited ${this.exit.code}`;
  }

  /** The newest line matching `re`. */
  lastLine(re: RegExp): string | undefined {
    for (let i = this.lines.length - 1; i >= 0; i--) if (re.test(this.lines[i]!)) return this.lines[i];
    return undefined;
  }

  /** Its last error line, without the timestamp (a stack trace's first line for a crash). */
  lastError(): string | undefined {
    const line = this.lastLine(/ ERROR |^\w*Error\b|^Error:/);
    return line?.replace(/^\S+Z\s+ERROR\s+/, "");
  }

  /** Its newest METRICS_JSON record. */
  metrics(): Record<string, unknown> | undefined {
    const line = this.lastLine(/^METRICS_JSON: /);
    if (line === undefined) return undefined;
    try {
      return JSON.parse(line.slice("METRICS_JSON: ".length)) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }
}

/** Server instances and worker processes of one run, in start order. */
export class Cluster {
  readonly place: RunPlace;
  readonly servers: ChaosProcess[] = [];
  readonly workers: ChaosProcess[] = [];
  readonly #started = Date.now();
  readonly #events: WriteStream;
  readonly events: string[] = [];
  readonly #lineListeners = new Set<(p: ChaosProcess, line: string) => void>();
  readonly #forward = (p: ChaosProcess, line: string) => {
    for (const listener of this.#lineListeners) listener(p, line);
  };

  constructor(place: RunPlace) {
    this.place = place;
    this.#events = createWriteStream(join(place.dir, "chaos-events.log"));
  }

  /** Milliseconds since the run started. */
  readonly clock = () => Date.now() - this.#started;

  /** Notes what the harness did or saw, with the time since the run started (chaos-events.log). */
  note(message: string): void {
    const line = `+${(this.clock() / 1000).toFixed(2)}s ${message}`;
    this.events.push(line);
    this.#events.write(`${line}\n`);
  }

  /** The newest server instance. */
  get server(): ChaosProcess | undefined {
    return this.servers.at(-1);
  }

  startServer(): ChaosProcess {
    const p = new ChaosProcess(`server-${this.servers.length + 1}`, "server", serverEnv(this.place), this.place.dir, this.clock, this.#forward);
    this.servers.push(p);
    this.note(`started ${p.name} (pid ${p.child.pid})`);
    return p;
  }

  startWorker(): ChaosProcess {
    const name = `chaos-${this.workers.length + 1}`;
    const p = new ChaosProcess(name, "worker", workerEnv(this.place, name), this.place.dir, this.clock, this.#forward);
    this.workers.push(p);
    this.note(`started ${p.name} (pid ${p.child.pid})`);
    return p;
  }

  /**
   * The first worker process to print a line matching `re` (one that already did, or the next as the
   * line arrives, with no polling delay); undefined if `signal` aborts first.
   */
  firstWorkerLine(re: RegExp, signal: AbortSignal): Promise<ChaosProcess | undefined> {
    const already = this.workers.find((w) => w.lastLine(re) !== undefined);
    if (already !== undefined || signal.aborted) return Promise.resolve(already);
    return new Promise((resolve) => {
      const done = (p: ChaosProcess | undefined) => {
        this.#lineListeners.delete(listener);
        signal.removeEventListener("abort", onAbort);
        resolve(p);
      };
      const listener = (p: ChaosProcess, line: string) => {
        if (p.kind === "worker" && re.test(line)) done(p);
      };
      const onAbort = () => done(undefined);
      this.#lineListeners.add(listener);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  liveWorkers(): ChaosProcess[] {
    return this.workers.filter((w) => w.alive);
  }

  all(): ChaosProcess[] {
    return [...this.servers, ...this.workers];
  }

  /** SIGKILLs every process still running and waits (at most 5 s) for their exits. */
  async killAll(reason: string): Promise<void> {
    const alive = this.all().filter((p) => p.alive);
    if (alive.length > 0) this.note(`SIGKILL ${alive.map((p) => p.name).join(", ")}: ${reason}`);
    for (const p of alive) p.signal("SIGKILL");
    await Promise.race([Promise.all(alive.map((p) => p.exited)), new Promise((r) => setTimeout(r, 5000).unref())]);
  }

  close(): void {
    this.#events.end();
  }
}
