/**
 * Everything one training run holds, wired together: the parameter store, the worker slots, the
 * optimizer, the aggregator for the configured mode, and who initialises the parameters.
 */
import { EventEmitter } from "node:events";
import { Code } from "@connectrpc/connect";
import { ErrorReason } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { configuredIdentity, identityMismatch } from "@distributed-ps/common/job-identity.ts";
import type { Logger } from "@distributed-ps/common/log.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import type { WorkerMetrics } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import type { Aggregator } from "../aggregation/aggregator.ts";
import type { Checkpoint } from "../checkpoint/checkpointer.ts";
import { AsyncApply } from "../aggregation/async-apply.ts";
import { StaleSynchronous } from "../aggregation/stale-synchronous.ts";
import { SyncBarrier } from "../aggregation/sync-barrier.ts";
import type { ServerEnv } from "../config.ts";
import { DataPlan, planFromPositions, type Part } from "./data-plan.ts";
import { GradientBuffers } from "../store/gradient-buffers.ts";
import { awaitingWorker, Membership, refusal, type Slot } from "./membership.ts";
import { optimizerFromConfig } from "../optimizer/index.ts";
import { ParallelStep } from "../optimizer/parallel-step.ts";
import { ModelExtrasStore } from "./model-extras.ts";
import { ParameterStore } from "../store/parameter-store.ts";
import { shardIdentity } from "./shards.ts";
import { Updater } from "./updater.ts";
import { Signal } from "./signal.ts";

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

/** What NextAssignment answers: a part to train, nothing left, stop (retired), or ask again. */
export type Assignment = { kind: "train"; part: Part } | { kind: "done" } | { kind: "retire" } | { kind: "wait" };

/**
 * Events: "applied" after every parameter update (synchronously, with the state consistent — the
 * moment to capture a checkpoint); "finished" after a slot finished; "complete" once the run is
 * complete; "stalled" when no worker has been live for NO_WORKERS_TIMEOUT_MS of an unfinished run;
 * "pushed" after each gradient that counted; "metrics" after each metrics report.
 */
export class TrainingRun extends EventEmitter<{
  applied: [version: number];
  finished: [slot: number];
  complete: [];
  stalled: [idleMs: number];
  pushed: [PushRecord];
  metrics: [MetricsRecord];
}> {
  readonly config: ServerEnv;
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
  /** Most recent metrics reports across all slots, oldest first (bounded). */
  readonly metricsHistory: MetricsRecord[] = [];
  #initializer: { slot: number; token: string } | undefined;
  /** When the first worker registered; the start quorum's timeout counts from it. */
  #firstRegistrationAt: number | undefined;
  #started = false;
  /** Slots registered since this server process started (a restored run counts from zero). */
  readonly #joinedSinceStart = new Set<number>();
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

  constructor(config: ServerEnv, log: Logger, now: () => number = Date.now) {
    super();
    this.config = config;
    this.log = log;
    this.#now = now;
    this.#lastWorkerSeen = now();
    this.#epochs = config.EPOCHS;
    this.extras = new ModelExtrasStore((name) => this.store.shapeOf(name), shardIdentity(config).count === 1);
    this.membership = new Membership({
      totalWorkers: config.TOTAL_WORKERS_EXPECTED,
      leaseMs: config.LEASE_MS,
      replacementGraceMs: config.REPLACEMENT_GRACE_MS,
      identity: configuredIdentity(config),
      now,
      onJoin: (slot, replacement) => {
        this.#firstRegistrationAt ??= Date.now();
        this.#joinedSinceStart.add(slot.index);
        log.info(`slot ${slot.index} ${replacement ? "re-registered" : "registered"} by ${slot.label || "a worker"} (registration #${slot.registrations})`);
        this.aggregator.onJoin(slot, replacement);
        this.changed.notify();
      },
      onLeave: (slot, reason) => {
        if (reason === "lease expired" || reason === "left") {
          const why = reason === "left" ? "its worker is stopping" : `lease expired (no call for ${config.LEASE_MS} ms)`;
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
    const { optimizer, schedule } = optimizerFromConfig(config);
    this.parallelStep = new ParallelStep({ helpers: config.STEP_THREADS - 1, log });
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
    this.buffers = new GradientBuffers(this.store, config.TOTAL_WORKERS_EXPECTED + 1);
    const common = { updater: this.updater, membership: this.membership, log };
    this.aggregator =
      config.SERVER_MODE === "sync"
        ? new SyncBarrier({ ...common, syncTimeoutMs: config.SYNC_TIMEOUT_MS })
        : config.SERVER_MODE === "ssp"
          ? new StaleSynchronous({ ...common, maxStaleness: config.MAX_STALENESS, stalenessBound: config.STALENESS_BOUND, syncTimeoutMs: config.SYNC_TIMEOUT_MS })
          : new AsyncApply({ ...common, maxStaleness: config.MAX_STALENESS });
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
    const mismatch = c.fingerprint === undefined ? undefined : identityMismatch(c.fingerprint, configuredIdentity(this.config), undefined);
    if (mismatch !== undefined) {
      throw new Error(`checkpoint ${c.key} is of another job: ${mismatch}; point CHECKPOINT_URI elsewhere for a new run`);
    }
    if (c.epochs !== undefined && this.config.EPOCHS !== undefined && this.config.EPOCHS !== c.epochs) {
      throw new Error(`checkpoint ${c.key} is of a run of ${c.epochs} epochs, but EPOCHS=${this.config.EPOCHS}: point CHECKPOINT_URI elsewhere for a new run`);
    }
    if (c.mode !== "" && c.mode !== this.config.SERVER_MODE) {
      this.log.warn(`checkpoint ${c.key} was written in ${c.mode} mode; continuing in ${this.config.SERVER_MODE} mode`);
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
    this.log.info(`resumed from checkpoint ${c.key}: version ${c.version}, ${c.updatesApplied} updates applied; slots ${positions.join(", ")}`);
    this.changed.notify();
  }

  /**
   * Which part of the data `slot` trains next (`epochs`: how many the worker trains in all). In
   * order: the rest of a part it already holds (a replacement continues where the slot was); stop,
   * if retired; the rest of a part whose slot was retired or abandoned; stop, once every part of
   * every epoch is trained; its part of the next epoch — beginning that epoch, cut among the slots
   * live or awaiting a replacement, if it has no plan yet and the caller has finished its part of the
   * newest one (or holds none there: everybody else's is done). Otherwise it waits — a new worker
   * for the next epoch boundary, a worker whose own parts are done for the others' — and is not
   * waited for by synchronous steps meanwhile. So a worker stays until the whole run's data is
   * trained, ready to take over the part of a worker that is gone.
   */
  async nextAssignment(slot: Slot, epochs: number, signal: AbortSignal): Promise<Assignment> {
    if (this.#epochs === undefined) this.#epochs = epochs;
    else if (epochs !== this.#epochs) {
      throw refusal(`NextAssignment: this run trains ${this.#epochs} epochs, the worker asks for ${epochs}`, Code.FailedPrecondition, ErrorReason.JOB_MISMATCH);
    }
    const decide = (): Assignment => {
      const plan = this.plan;
      const held = plan.heldBy(slot.index);
      if (held !== undefined && (!slot.retired || held === slot.part)) return { kind: "train", part: held };
      if (slot.retired) return { kind: "retire" };
      const orphan = plan.orphan(epochs);
      if (orphan !== undefined) {
        orphan.holder = slot.index;
        this.log.info(`slot ${slot.index} takes over epoch ${orphan.epoch + 1} part ${orphan.index}/${orphan.parts} from batch ${orphan.batch} (planned for slot ${orphan.plannedSlot})`);
        return { kind: "train", part: orphan };
      }
      if (plan.trainedThrough(epochs)) return { kind: "done" };
      const next = plan.latest + 1;
      const newest = plan.epoch(plan.latest);
      const boundary = newest === undefined || newest.some((p) => p.plannedSlot === slot.index && p.holder === slot.index) || newest.every((p) => p.complete);
      if (next >= epochs || !boundary) return { kind: "wait" };
      const members = this.membership.slots.filter((s) => !s.retired && (s.state === "active" || awaitingWorker(s))).map((s) => s.index);
      const parts = plan.begin(next, members);
      this.log.info(`epoch ${next + 1}: data divided among ${members.length} worker slot(s) (${members.join(", ")})`);
      this.changed.notify();
      return { kind: "train", part: parts.find((p) => p.holder === slot.index)! };
    };
    let answer = decide();
    if (answer.kind === "wait") {
      this.membership.setIdle(slot, true);
      await this.changed.until(() => (answer = decide()).kind !== "wait" || slot.state !== "active", this.config.WAIT_TIMEOUT_MS, signal);
    }
    if (answer.kind !== "wait" && slot.idle) {
      this.membership.setIdle(slot, false);
      this.aggregator.onJoin(slot, false); // back from waiting: ssp starts its clock level with the others
    }
    if (answer.kind === "train") slot.part = answer.part;
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
    if (!live) slot.part = undefined;
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
    if (idle >= this.config.NO_WORKERS_TIMEOUT_MS && !this.#stallAnnounced) {
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

  /**
   * Whether training may start: the parameters exist and every unfinished slot has registered
   * with this server process, or START_TIMEOUT_MS has passed since the first registration (then
   * it starts with those present and latecomers join as they come). Starting together keeps the
   * first steps — also the first after a restart from a checkpoint — from being computed by
   * whoever happened to connect first.
   */
  trainingStarted(): boolean {
    if (this.#started) return true;
    if (!this.store.initialized || this.#firstRegistrationAt === undefined) return false;
    // Abandoned slots are not waited for: nobody came for them in a lease plus the grace.
    const everyone = this.membership.slots.every((s) => s.retired || s.abandoned || s.state === "finished" || this.#joinedSinceStart.has(s.index));
    const waited = Date.now() - this.#firstRegistrationAt;
    if (!everyone && waited < this.config.START_TIMEOUT_MS) return false;
    this.#started = true;
    const present = this.membership.active().length;
    this.log.info(
      everyone
        ? `all ${this.membership.workerCount} workers registered: training starts`
        : `start timeout (${this.config.START_TIMEOUT_MS} ms): training starts with ${present} of ${this.membership.workerCount} workers`,
    );
    return true;
  }

  /** Time left before the start quorum's timeout, in milliseconds. */
  startTimeoutLeftMs(): number {
    if (this.#firstRegistrationAt === undefined) return this.config.START_TIMEOUT_MS;
    return Math.max(0, this.config.START_TIMEOUT_MS - (Date.now() - this.#firstRegistrationAt));
  }

  recordMetrics(slot: Slot, metrics: WorkerMetrics): void {
    slot.latestMetrics = metrics;
    const record = { slot: slot.index, metrics };
    this.metricsHistory.push(record);
    this.emit("metrics", record);
    if (this.metricsHistory.length > 2000) this.metricsHistory.splice(0, this.metricsHistory.length - 1000);
  }

  close(): void {
    this.aggregator.close();
    void this.parallelStep.close();
  }
}
