/**
 * Runs an update's optimizer steps on the server's thread and on helper threads at once.
 *
 * Why: a sync step is the one moment when every worker waits for the server (their pulls need the
 * new parameters), and the step runs on one core: decoding and summing four fp16 gradients into the
 * 11.2M parameters of the target workload takes ~26 ms per step, during which the machine's other
 * cores idle. The step is elementwise, so it is cut into units (a tensor, or 262,144 elements of a
 * large one) that every thread claims from a shared counter until none are left; each element is
 * computed by the same kernel whichever thread runs it, so results are bit-identical to one thread.
 *
 * The server's thread takes part and waits (Atomics.wait) until the helpers' units are done: an
 * update stays synchronous for its callers, and nothing can observe a half-applied one. A helper that
 * starts late simply finds nothing left to claim. Only jobs whose arrays are all in shared memory
 * (parameters, optimizer state and gradient buffers are allocated there: shared-memory.ts) go to the
 * helpers; the rest, and updates too small to be worth a message, run on the server's thread alone.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { Logger } from "@distributed-ps/common/log.ts";
import { isShared, runStepJob, toWire, type StepJob, type WireStepJob } from "./step-job.ts";

/** Elements per unit: 16 kernel blocks, large enough that claiming one costs nothing in comparison. */
export const UNIT_ELEMENTS = 262_144;

/** Counter slots in the shared Int32Array. */
const NEXT = 0; // the next unit number to claim; numbers only grow, so a late helper's claims fail
const DONE = 1; // units finished in the current update
const FAILED = 2; // set by a helper whose unit threw
const BY_HELPERS = 3; // units the helpers have run, over all updates

/** How long the server's thread waits for a helper to make progress before giving up on the update. */
const STALL_MS = 30_000;

/** What a helper receives per update: the jobs, the units as (job, from, to) triples, and their numbering base. */
export interface UpdateMessage {
  jobs: WireStepJob[];
  units: Int32Array;
  base: number;
}

/**
 * Claims and runs units until none are left (the server's thread and every helper run this).
 * Units are numbered base, base + 1, ...; a claim succeeds only while the shared counter is in this
 * update's range, so a helper still holding an older update's message claims nothing.
 */
export function runUnits(jobs: readonly StepJob[], units: Int32Array, counters: Int32Array, base: number, helper: boolean): void {
  const total = units.length / 3;
  for (;;) {
    const next = Atomics.load(counters, NEXT);
    if (next < base || next >= base + total) return;
    if (Atomics.compareExchange(counters, NEXT, next, next + 1) !== next) continue;
    const u = (next - base) * 3;
    try {
      runStepJob(jobs[units[u]!]!, { from: units[u + 1]!, to: units[u + 2]! });
    } catch (err) {
      Atomics.store(counters, FAILED, 1);
      throw err;
    } finally {
      if (helper) Atomics.add(counters, BY_HELPERS, 1);
      if (Atomics.add(counters, DONE, 1) + 1 === total && helper) Atomics.notify(counters, DONE);
    }
  }
}

/** Cuts jobs into units: a tensor each, large tensors in UNIT_ELEMENTS pieces. */
export function cutIntoUnits(jobs: readonly StepJob[], unitElements = UNIT_ELEMENTS): Int32Array {
  const triples: number[] = [];
  jobs.forEach((job, j) => {
    const n = job.param.length;
    for (let from = 0; from < n; from += unitElements) triples.push(j, from, Math.min(n, from + unitElements));
  });
  return Int32Array.from(triples);
}

export class ParallelStep {
  /** Helper threads (0: every step runs on the server's thread). */
  readonly helpers: number;
  readonly #minElements: number;
  readonly #unitElements: number;
  readonly #serverThreadClaims: boolean;
  readonly #log: Logger | undefined;
  readonly #counters = new Int32Array(new SharedArrayBuffer(4 * Int32Array.BYTES_PER_ELEMENT));
  #workers: Worker[] = [];
  /** Set when the helpers failed or were closed: every later update runs on the server's thread. */
  #broken = false;

  /**
   * @param o.helpers helper threads: "auto" is one per core beyond the first, at most 3
   * @param o.minElements updates with fewer shared elements than this run on the server's thread alone
   * @param o.serverThreadClaims false leaves every shared unit to the helpers (tests use it to make
   *   sure the helpers did the work; otherwise who runs what depends on timing)
   */
  constructor(o: { helpers: number | "auto"; minElements?: number; unitElements?: number; serverThreadClaims?: boolean; log?: Logger }) {
    this.helpers = o.helpers === "auto" ? Math.min(3, availableParallelism() - 1) : o.helpers;
    this.#minElements = o.minElements ?? 1 << 20;
    this.#unitElements = o.unitElements ?? UNIT_ELEMENTS;
    this.#serverThreadClaims = o.serverThreadClaims ?? true;
    this.#log = o.log;
  }

  /** Units the helper threads have run so far (the rest ran on the server's thread). */
  get unitsByHelpers(): number {
    return Atomics.load(this.#counters, BY_HELPERS);
  }

  /** Runs every job; returns once all of them are applied. */
  run(jobs: readonly StepJob[]): void {
    // A small update (a small model's every step) runs here without looking at its arrays.
    if (this.helpers === 0 || this.#broken || jobs.reduce((n, job) => n + job.param.length, 0) < this.#minElements) {
      for (const job of jobs) runStepJob(job);
      return;
    }
    const shared: StepJob[] = [];
    const local: StepJob[] = [];
    let sharedElements = 0;
    for (const job of jobs) {
      if (isShared(job)) {
        shared.push(job);
        sharedElements += job.param.length;
      } else {
        local.push(job);
      }
    }
    if (sharedElements < this.#minElements) {
      for (const job of jobs) runStepJob(job);
      return;
    }
    // Check every job's arrays here, where an error reaches the caller, before any thread starts.
    for (const job of shared) runStepJob(job, { from: 0, to: 0 });
    const units = cutIntoUnits(shared, this.#unitElements);
    const c = this.#counters;
    // Numbers only grow; start again from 0 long before they could overflow (no helper is working now).
    if (Atomics.load(c, NEXT) > 1 << 30) Atomics.store(c, NEXT, 0);
    const base = Atomics.load(c, NEXT);
    Atomics.store(c, DONE, 0);
    const message: UpdateMessage = { jobs: shared.map(toWire), units, base };
    for (const w of this.#startedWorkers()) w.postMessage(message);
    // Without helpers (they could not be started) this thread takes every unit.
    if (this.#serverThreadClaims || this.#workers.length === 0) runUnits(shared, units, c, base, false);
    for (const job of local) runStepJob(job);
    this.#awaitHelpers(units.length / 3);
  }

  /** Stops the helper threads (they hold nothing that needs saving). */
  async close(): Promise<void> {
    this.#broken = true;
    const workers = this.#workers;
    this.#workers = [];
    await Promise.all(workers.map((w) => w.terminate()));
  }

  #awaitHelpers(total: number): void {
    const c = this.#counters;
    for (;;) {
      const done = Atomics.load(c, DONE);
      if (done >= total) break;
      if (Atomics.wait(c, DONE, done, STALL_MS) === "timed-out" && Atomics.load(c, DONE) === done) {
        this.#broken = true;
        throw new Error(`parameter update: a step helper thread made no progress for ${STALL_MS} ms (${done} of ${total} parts applied); later updates run on the main thread`);
      }
    }
    if (Atomics.load(c, FAILED) !== 0) {
      this.#broken = true;
      throw new Error("parameter update: a step helper thread failed (its error is logged); later updates run on the main thread");
    }
  }

  #startedWorkers(): Worker[] {
    if (this.#workers.length === 0) {
      try {
        for (let i = 0; i < this.helpers; i++) {
          const w = new Worker(new URL("./step-helper.ts", import.meta.url), { workerData: { counters: this.#counters } });
          w.unref(); // helpers never keep the server alive
          w.on("error", (err) => this.#log?.error(`step helper thread ${i} failed: ${err.stack ?? err.message}`));
          this.#workers.push(w);
        }
      } catch (err) {
        this.#broken = true;
        this.#log?.error(`could not start step helper threads (${(err as Error).message}); updates run on the server's thread alone`);
      }
    }
    return this.#workers;
  }
}
