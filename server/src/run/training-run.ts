/**
 * One training run, wired together: the parameter store, the worker slots (membership.ts), the data
 * plan (data-plan.ts), the start quorum (start-quorum.ts), the optimizer and the aggregator for the
 * configured mode. What it decides itself is what ties them: who initialises the parameters, when
 * the run is complete or stalled, and how a checkpoint is restored.
 */
import { EventEmitter } from "node:events";
import { Code } from "@connectrpc/connect";
import { ErrorReason, type WorkerMetrics } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { identityMismatch } from "@distributed-ps/common/job-identity.ts";
import type { Logger } from "@distributed-ps/common/log.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import type { Aggregator } from "../aggregation/aggregator.ts";
import { AsyncApply } from "../aggregation/async-apply.ts";
import { StaleSynchronous } from "../aggregation/stale-synchronous.ts";
import { SyncBarrier } from "../aggregation/sync-barrier.ts";
import type { Checkpoint } from "../checkpoint/checkpoint.ts";
import { createOptimizer } from "../optimizer/index.ts";
import { ParallelStep } from "../optimizer/parallel-step.ts";
import { GradientBuffers } from "../store/gradient-buffers.ts";
import { ParameterStore } from "../store/parameter-store.ts";
import { DataPlan, planFromPositions, type Assignment } from "./data-plan.ts";
import { Membership } from "./membership.ts";
import { ModelExtrasStore } from "./model-extras.ts";
import { refusal } from "./refusal.ts";
import type { RunOptions } from "./run-options.ts";
import { shardIdentity } from "./shards.ts";
import { Signal } from "./signal.ts";
import { awaitingWorker, type Slot } from "./slot.ts";
import { StartQuorum } from "./start-quorum.ts";
import { Updater } from "./updater.ts";

export interface MetricsRecord {
  slot: number;
  metrics: WorkerMetrics;
}

/** A gradient that counted, as its push returned (for telemetry: throughput, step time, staleness). */
export interface PushRecord {
  slot: number;
  /** Training examples the gradient averaged over. */
  examples: number;
  /** Versions between the gradient's base and the version it was applied to. */
  staleness: number;
  /** Parameter version after it was applied. */
  version: number;
}

/**
 * Events: "applied" after every parameter update (synchronously, with the state consistent — the
 * moment to capture a checkpoint); "finished" after a slot finished; "resized" after the worker
 * count changed (SetWorkerCount, the ECS service); "complete" once the run is
 * complete; "stalled" when no worker has been live for NO_WORKERS_TIMEOUT_MS of an unfinished run;
 * "pushed" after each gradient that counted; "metrics" after each metrics report.
 */
export class TrainingRun extends EventEmitter<{
  applied: [version: number];
  finished: [slot: number];
  resized: [count: number];
  complete: [];
  stalled: [idleMs: number];
  pushed: [PushRecord];
  metrics: [MetricsRecord];
}> {
  readonly options: RunOptions;
  readonly log: Logger;
  readonly store = new ParameterStore();
  readonly membership: Membership;
  /** Which slot trains which part of each epoch's data. Kept by shard 0 of a sharded run. */
  readonly plan = new DataPlan();
  /** The finished workers' batch-norm statistics and the model's inference graph, for the export.
   *  Kept by shard 0 of a sharded run. */
  readonly extras: ModelExtrasStore;
  readonly buffers: GradientBuffers;
  readonly updater: Updater;
  /** Applies each update, on helper threads too (STEP_THREADS). */
  readonly parallelStep: ParallelStep;
  readonly aggregator: Aggregator;
  /** Notified whenever the parameters change version or get initialised, and when a slot joins or leaves. */
  readonly changed = new Signal();
  readonly startedAt = Date.now();
  readonly #quorum: StartQuorum;
  #initializer: { slot: number; token: string } | undefined;
  /** Key of the checkpoint this run resumed from, if any. */
  restoredFrom: string | undefined;
  /** Epochs the run trains: the server's EPOCHS, else what the first NextAssignment asked for. */
  #epochs: number | undefined;
  /** Resumed from the checkpoint of a run that was already complete. */
  #restoredComplete = false;
  #completeAnnounced = false;
  readonly #now: () => number;
  /** When a worker was last live (or the server started): the no-workers timeout counts from it. */
  #lastWorkerSeen: number;
  #stallAnnounced = false;

  constructor(options: RunOptions, log: Logger, now: () => number = Date.now) {
    super();
    this.options = options;
    this.log = log;
    this.#now = now;
    this.#lastWorkerSeen = now();
    this.#epochs = options.epochs;
    this.extras = new ModelExtrasStore((name) => this.store.shapeOf(name), shardIdentity(options.shard).count === 1);
    this.membership = new Membership({
      totalWorkers: options.workers,
      leaseMs: options.leaseMs,
      replacementGraceMs: options.replacementGraceMs,
      identity: options.identity,
      now,
      onJoin: (slot, replacement) => {
        this.#quorum.joined(slot.index);
        log.info(`slot ${slot.index} ${replacement ? "re-registered" : "registered"} by ${slot.label || "a worker"} (registration #${slot.registrations})`);
        this.aggregator.onJoin(slot, replacement);
        this.changed.notify();
      },
      onLeave: (slot, reason) => {
        if (reason === "lease expired" || reason === "left") {
          const why = reason === "left" ? "its worker is stopping" : `lease expired (no call for ${options.leaseMs} ms)`;
          const wait = `slot is free for a replacement for ${this.membership.replacementGraceMs} ms, then its data goes to the others`;
          log.warn(`slot ${slot.index}: ${why}; ${slot.retired ? "retired" : wait}`);
          // A retired slot's worker died before finishing its part: nobody will come back for it.
          if (slot.retired) this.#handOver(slot);
        } else if (reason === "finished") {
          log.info(`slot ${slot.index} finished after ${slot.pushes} gradient(s)${slot.retired ? " (retired)" : ""}`);
          this.emit("finished", slot.index);
        }
        this.aggregator.onLeave();
        this.changed.notify();
        if (reason !== "idle") this.#checkComplete();
      },
      onRetire: (slot) => {
        log.info(`slot ${slot.index} retired${slot.state === "active" ? " (its worker stops after its current part)" : ""}`);
        this.#handOver(slot);
      },
      onAbandon: (slot) => {
        if (this.plan.heldBy(slot.index) !== undefined) {
          log.warn(`slot ${slot.index}: no replacement within ${this.membership.replacementGraceMs} ms (REPLACEMENT_GRACE_MS); its data goes to the other workers`);
          this.#handOver(slot);
        }
        this.changed.notify(); // the start quorum no longer waits for it either
        this.#checkComplete();
      },
      complete: () => this.complete,
    });
    this.#quorum = new StartQuorum({ membership: this.membership, timeoutMs: options.startTimeoutMs, log, now });
    const { optimizer, schedule } = createOptimizer(options.optimizer);
    this.parallelStep = new ParallelStep({ helpers: options.stepThreads - 1, log });
    this.updater = new Updater(
      this.store,
      optimizer,
      schedule,
      (version) => {
        this.changed.notify();
        this.emit("applied", version);
      },
      this.parallelStep,
    );
    // Sparse (top-k) gradients are scattered into float32 sets from this pool (dense ones are kept as
    // they arrived); the sync barrier holds one per worker until its step: keep that many for reuse.
    this.buffers = new GradientBuffers(this.store, options.workers + 1);
    const common = { updater: this.updater, membership: this.membership, log };
    this.aggregator =
      options.mode === "sync"
        ? new SyncBarrier({ ...common, syncTimeoutMs: options.syncTimeoutMs })
        : options.mode === "ssp"
          ? new StaleSynchronous({ ...common, maxStaleness: options.maxStaleness, stalenessBound: options.stalenessBound, syncTimeoutMs: options.syncTimeoutMs })
          : new AsyncApply({ ...common, maxStaleness: options.maxStaleness });
  }

  /**
   * Whether `slot` should initialise the parameters: true when they do not exist yet and no live
   * worker is already doing it (an initialiser whose lease ran out loses the job).
   */
  claimInitialization(slot: Slot): boolean {
    if (this.store.initialized) return false;
    const current = this.#initializer;
    const holder = current === undefined ? undefined : this.membership.slots[current.slot];
    if (current !== undefined && holder?.state === "active" && holder.token === current.token && holder !== slot) return false;
    this.#initializer = { slot: slot.index, token: slot.token };
    return true;
  }

  isInitializer(slot: Slot): boolean {
    return this.#initializer?.slot === slot.index && this.#initializer.token === slot.token;
  }

  /** Continues a run from a checkpoint: parameters, optimizer state, schedule position, slots. */
  restore(c: Checkpoint): void {
    const mismatch = c.fingerprint === undefined ? undefined : identityMismatch(c.fingerprint, this.options.identity, undefined);
    if (mismatch !== undefined) {
      throw new Error(`checkpoint ${c.key} is of another job: ${mismatch}; point CHECKPOINT_URI elsewhere for a new run`);
    }
    if (c.epochs !== undefined && this.options.epochs !== undefined && this.options.epochs !== c.epochs) {
      throw new Error(`checkpoint ${c.key} is of a run of ${c.epochs} epochs, but EPOCHS=${this.options.epochs}: point CHECKPOINT_URI elsewhere for a new run`);
    }
    if (c.mode !== "" && c.mode !== this.options.mode) {
      this.log.warn(`checkpoint ${c.key} was written in ${c.mode} mode; continuing in ${this.options.mode} mode`);
    }
    this.store.initialize(c.params, c.version);
    this.updater.optimizer.loadState(c.optimizerState);
    this.updater.updatesApplied = c.updatesApplied;
    const fromBeforePlans = c.plan.length === 0 && c.slots.some((s) => s.finished || s.position.epoch > 0 || s.position.batch > 0);
    this.plan.restore(fromBeforePlans ? planFromPositions(c.slots) : c.plan);
    this.membership.restore(c.slots, c.fingerprint);
    this.extras.restore(c.extras);
    this.aggregator.restart(c.version);
    this.restoredFrom = c.key;
    this.#epochs = c.epochs ?? this.#epochs;
    this.#restoredComplete = c.complete;
    // Leases do not survive a restart: a retired slot's worker, which was finishing its part, is
    // gone (and could not register into a retired slot again), as is a finished one's.
    for (const slot of this.membership.slots) if (slot.retired || slot.state === "finished") this.#handOver(slot);
    const positions = c.slots.map((s, i) => `${i}:${s.finished ? "finished" : `epoch ${s.position.epoch + 1} batch ${s.position.batch}`}`);
    this.log.info(`resumed from checkpoint ${c.key}: version ${c.version}, ${c.updatesApplied} updates applied, ${this.membership.workerCount} workers; slots ${positions.join(", ")}`);
    this.changed.notify();
  }

  /**
   * Which part of the data `slot` trains next (`epochs`: how many the worker trains in all), as
   * DataPlan.assign decides. When the answer is to wait — a new worker for the next epoch boundary,
   * a worker whose own parts are done for the others' — the slot is idle meanwhile (no synchronous
   * step waits for it) and asks again whenever the run changes. So a worker stays until the whole
   * run's data is trained, ready to take over the part of a worker that is gone.
   */
  async nextAssignment(slot: Slot, epochs: number, signal: AbortSignal): Promise<Assignment> {
    if (this.#epochs === undefined) this.#epochs = epochs;
    else if (epochs !== this.#epochs) {
      throw refusal(`NextAssignment: this run trains ${this.#epochs} epochs, the worker asks for ${epochs}`, Code.FailedPrecondition, ErrorReason.JOB_MISMATCH);
    }
    const decide = (): Assignment => {
      const members = () => this.membership.slots.filter((s) => !s.retired && (s.state === "active" || awaitingWorker(s))).map((s) => s.index);
      const { assignment, adopted, begun } = this.plan.assign(slot, epochs, members);
      if (adopted !== undefined) {
        this.log.info(`slot ${slot.index} takes over epoch ${adopted.epoch + 1} part ${adopted.index}/${adopted.parts} from batch ${adopted.batch} (planned for slot ${adopted.plannedSlot})`);
      }
      if (begun !== undefined) {
        this.log.info(`epoch ${begun[0]!.epoch + 1}: data divided among ${begun.length} worker slot(s) (${begun.map((p) => p.plannedSlot).join(", ")})`);
        this.changed.notify();
      }
      return assignment;
    };
    let answer = decide();
    if (answer.kind === "wait") {
      this.membership.setIdle(slot, true);
      await this.changed.until(() => (answer = decide()).kind !== "wait" || slot.state !== "active", this.options.waitTimeoutMs, signal);
    }
    if (answer.kind !== "wait" && slot.idle) {
      this.membership.setIdle(slot, false);
      this.aggregator.onJoin(slot, false); // back from waiting: ssp starts its clock level with the others
    }
    if (answer.kind === "train") this.membership.assign(slot, answer.part);
    return answer;
  }

  /** Changes the worker count (SetWorkerCount, the ECS worker service's desired count). */
  resize(count: number): { opened: number[]; retired: number[] } {
    const before = this.membership.workerCount;
    const r = this.membership.resize(count);
    if (before !== count) {
      this.log.info(
        `worker count ${before} -> ${count}` +
          (r.opened.length > 0 ? `; opened slot(s) ${r.opened.join(", ")}` : "") +
          (r.retired.length > 0 ? `; retired slot(s) ${r.retired.join(", ")}` : ""),
      );
    }
    this.buffers.reserve(this.membership.slots.length + 1);
    this.changed.notify();
    this.aggregator.onLeave();
    if (r.opened.length > 0 || r.retired.length > 0) this.emit("resized", this.membership.workerCount);
    this.#checkComplete();
    return r;
  }

  /**
   * Releases the data a retired or abandoned slot still holds to whoever runs out of work first —
   * all of it if nobody holds the slot, else (a retired slot whose worker is finishing its part) all
   * but that part.
   */
  #handOver(slot: Slot): void {
    const live = slot.state === "active";
    const released = this.plan.release(slot.index, live ? slot.part : undefined);
    if (!live) this.membership.assign(slot, undefined);
    if (released.length > 0) {
      const parts = released.map((p) => `epoch ${p.epoch + 1} part ${p.index}/${p.parts} from batch ${p.batch}`);
      this.log.info(`slot ${slot.index}'s data goes to other workers: ${parts.join(", ")}`);
    }
    this.changed.notify();
  }

  /** Epochs the run trains, once known (the server's EPOCHS, a checkpoint, or the first NextAssignment). */
  get epochs(): number | undefined {
    return this.#epochs;
  }

  /**
   * Whether the run is complete: no worker holds a live lease, and every part of every epoch is
   * trained — or, where no plan is kept (a shard other than 0, which NextAssignment does not reach),
   * some slot of the run finished (its worker was told every part is trained). A run resumed from
   * the checkpoint of a complete run is complete.
   */
  get complete(): boolean {
    if (this.#restoredComplete) return true;
    const slots = this.membership.slots;
    if (slots.some((s) => s.state === "active")) return false;
    if (this.#epochs !== undefined && this.plan.latest >= 0) return this.plan.trainedThrough(this.#epochs);
    return slots.some((s) => !s.retired && s.state === "finished");
  }

  #checkComplete(): void {
    if (this.#completeAnnounced || !this.complete) return;
    this.#completeAnnounced = true;
    this.emit("complete");
  }

  /**
   * Runs on a timer (server.ts): frees expired leases, abandons slots whose wait for a replacement
   * ran out, and gives up on an unfinished run that has had no live worker for NO_WORKERS_TIMEOUT_MS.
   */
  sweep(): void {
    this.membership.sweep();
    const now = this.#now();
    if (this.membership.active().length > 0 || this.complete) {
      this.#lastWorkerSeen = now;
      this.#stallAnnounced = false;
      return;
    }
    const idle = now - this.#lastWorkerSeen;
    if (idle >= this.options.noWorkersTimeoutMs && !this.#stallAnnounced) {
      this.#stallAnnounced = true;
      this.emit("stalled", idle);
    }
  }

  /** True when the parameters still need creating and nobody live is creating them. */
  initializerVacant(): boolean {
    if (this.store.initialized) return false;
    const current = this.#initializer;
    if (current === undefined) return true;
    const holder = this.membership.slots[current.slot];
    return holder?.state !== "active" || holder.token !== current.token;
  }

  initialize(tensors: readonly NamedTensor[]): void {
    this.store.initialize(tensors);
    this.#initializer = undefined;
    this.log.info(`parameters initialised: ${tensors.length} tensors, ${this.store.elementCount.toLocaleString("en-US")} elements`);
    this.changed.notify();
  }

  /** Whether training may start (start-quorum.ts): the parameters exist and the workers are here. */
  trainingStarted(): boolean {
    return this.#quorum.started(this.store.initialized);
  }

  /** Time left before the start quorum's timeout, in milliseconds. */
  startTimeoutLeftMs(): number {
    return this.#quorum.timeoutLeftMs();
  }

  recordMetrics(slot: Slot, metrics: WorkerMetrics): void {
    this.membership.reportMetrics(slot, metrics);
    this.emit("metrics", { slot: slot.index, metrics });
  }

  close(): void {
    this.aggregator.close();
    void this.parallelStep.close();
  }
}
