/**
 * Everything one training run holds, wired together: the parameter store, the worker slots, the
 * optimizer, the aggregator for the configured mode, and who initialises the parameters.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "@distributed-ps/common/log.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import type { WorkerMetrics } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import type { Aggregator } from "./aggregation/aggregator.ts";
import type { Checkpoint } from "./checkpoint/checkpointer.ts";
import { AsyncApply } from "./aggregation/async-apply.ts";
import { StaleSynchronous } from "./aggregation/stale-synchronous.ts";
import { SyncBarrier } from "./aggregation/sync-barrier.ts";
import type { ServerEnv } from "./config.ts";
import { GradientBuffers } from "./gradient-buffers.ts";
import { Membership, type Slot } from "./membership.ts";
import { optimizerFromConfig } from "./optimizer/index.ts";
import { ParameterStore } from "./parameter-store.ts";
import { Updater } from "./updater.ts";
import { Signal } from "./wait.ts";

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
 * moment to capture a checkpoint); "complete" once every slot has finished; "pushed" after each
 * gradient that counted; "metrics" after each metrics report.
 */
export class TrainingRun extends EventEmitter<{ applied: [version: number]; complete: []; pushed: [PushRecord]; metrics: [MetricsRecord] }> {
  readonly config: ServerEnv;
  readonly log: Logger;
  readonly store = new ParameterStore();
  readonly membership: Membership;
  readonly buffers: GradientBuffers;
  readonly updater: Updater;
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

  constructor(config: ServerEnv, log: Logger, now?: () => number) {
    super();
    this.config = config;
    this.log = log;
    this.membership = new Membership({
      totalWorkers: config.TOTAL_WORKERS_EXPECTED,
      leaseMs: config.LEASE_MS,
      now,
      onJoin: (slot, replacement) => {
        this.#firstRegistrationAt ??= Date.now();
        this.#joinedSinceStart.add(slot.index);
        log.info(`slot ${slot.index} ${replacement ? "re-registered" : "registered"} by ${slot.label || "a worker"} (registration #${slot.registrations})`);
        this.aggregator.onJoin(slot, replacement);
        this.changed.notify();
      },
      onLeave: (slot, reason) => {
        if (reason === "lease expired") log.warn(`slot ${slot.index}: lease expired (no call for ${config.LEASE_MS} ms); slot is free for a replacement`);
        else log.info(`slot ${slot.index} finished after ${slot.pushes} gradient(s)`);
        this.aggregator.onLeave(slot, reason);
        this.changed.notify();
        if (this.membership.runComplete) this.emit("complete");
      },
    });
    const { optimizer, schedule } = optimizerFromConfig(config);
    this.updater = new Updater(this.store, optimizer, schedule, (version) => {
      this.changed.notify();
      this.emit("applied", version);
    });
    // The sync barrier may hold one gradient per worker until the lower slots' have arrived (it sums
    // in slot order), plus the running sum: keep that many sets for reuse.
    this.buffers = new GradientBuffers(this.store, config.TOTAL_WORKERS_EXPECTED + 1);
    const common = { updater: this.updater, buffers: this.buffers, membership: this.membership, log };
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
    if (c.mode !== "" && c.mode !== this.config.SERVER_MODE) {
      this.log.warn(`checkpoint ${c.key} was written in ${c.mode} mode; continuing in ${this.config.SERVER_MODE} mode`);
    }
    this.store.initialize(c.params, c.version);
    this.updater.optimizer.loadState(c.optimizerState);
    this.updater.updatesApplied = c.updatesApplied;
    this.membership.restore(c.slots, c.fingerprint);
    this.aggregator.restart(c.version);
    this.restoredFrom = c.key;
    const positions = c.slots.map((s, i) => `${i}:${s.finished ? "finished" : `epoch ${s.position.epoch + 1} batch ${s.position.batch}`}`);
    this.log.info(`resumed from checkpoint ${c.key}: version ${c.version}, ${c.updatesApplied} updates applied; slots ${positions.join(", ")}`);
    this.changed.notify();
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
    const everyone = this.membership.slots.every((s) => s.state === "finished" || this.#joinedSinceStart.has(s.index));
    const waited = Date.now() - this.#firstRegistrationAt;
    if (!everyone && waited < this.config.START_TIMEOUT_MS) return false;
    this.#started = true;
    const present = this.membership.active().length;
    this.log.info(
      everyone
        ? `all ${this.membership.slots.length} workers registered: training starts`
        : `start timeout (${this.config.START_TIMEOUT_MS} ms): training starts with ${present} of ${this.membership.slots.length} workers`,
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
  }
}
