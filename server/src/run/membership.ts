/**
 * Worker slots and their leases.
 *
 * A run has as many slots as its worker count (TOTAL_WORKERS_EXPECTED at start; SetWorkerCount and
 * the ECS worker service change it). Registering takes a free slot and starts a lease; every call
 * the worker makes renews it. A worker silent for longer than the lease is gone: its slot becomes
 * free for a replacement (which inherits the slot's data position), and it leaves the synchronous
 * barrier. Slot ids therefore never grow past the largest worker count the run has had, however
 * often workers restart.
 *
 * A free slot waits a bounded time for a worker: a new slot (at the start, or opened by raising the
 * count) and a slot restored from a checkpoint a lease plus REPLACEMENT_GRACE_MS, a slot whose worker
 * is gone REPLACEMENT_GRACE_MS after its lease ran out (ECS starts a replacement meanwhile). Then it is
 * abandoned: its data goes to the other workers (DataPlan), and a worker that registers into it later
 * is a newcomer. So no run waits for a worker that nobody will start.
 *
 * Lowering the count retires slots: free ones first (their workers are gone anyway), then the
 * highest live ones, whose workers finish the part of the data they are training and then stop.
 * Raising it opens retired slots again, then new ones.
 *
 * This is the one module that changes a slot (elsewhere a Slot is read-only, slot.ts): its lease, its
 * data position as gradients are accepted and applied, the part it trains, its latest metrics.
 */
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorReason, type WorkerMetrics, type WorkerSession } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { identityMismatch, type Identity } from "@distributed-ps/common/job-identity.ts";
import type { Part } from "./part.ts";
import type { Progress } from "./progress.ts";
import { refusal } from "./refusal.ts";
import { newSlot, participates, type MutableSlot, type Slot, type SlotRecord } from "./slot.ts";

export type LeaveReason = "lease expired" | "left" | "finished" | "idle";

export interface MembershipOptions {
  totalWorkers: number;
  leaseMs: number;
  /** How long a free slot whose worker is gone waits for a replacement before it is abandoned (REPLACEMENT_GRACE_MS). */
  replacementGraceMs?: number;
  /** The fields of the run's identity the server's configuration fixes (job-identity.ts). */
  identity?: Identity;
  /** Clock in milliseconds; injectable for tests. */
  now?: () => number;
  /** Called after a slot stops being active, so waits that depend on membership re-check. */
  onLeave?: (slot: Slot, reason: LeaveReason) => void;
  /** Called after a slot becomes active. */
  onJoin?: (slot: Slot, replacement: boolean) => void;
  /** Called after a slot is retired, so the data it still had to train goes to others. */
  onRetire?: (slot: Slot) => void;
  /** Called when a free slot's wait for a replacement ran out, so its data goes to others. */
  onAbandon?: (slot: Slot) => void;
  /** Whether the run is complete: registrations are refused then. */
  complete?: () => boolean;
}

/** The most slots a run may have (TOTAL_WORKERS_EXPECTED's limit too). */
export const MAX_WORKERS = 1024;

export class Membership {
  readonly #slots: MutableSlot[];
  readonly leaseMs: number;
  readonly #now: () => number;
  readonly #onLeave: (slot: Slot, reason: LeaveReason) => void;
  readonly #onJoin: (slot: Slot, replacement: boolean) => void;
  readonly #onRetire: (slot: Slot) => void;
  readonly #onAbandon: (slot: Slot) => void;
  readonly #complete: () => boolean;
  readonly #graceMs: number;
  readonly #identity: Identity;
  #fingerprint: string | undefined;

  constructor(o: MembershipOptions) {
    this.leaseMs = o.leaseMs;
    this.#now = o.now ?? Date.now;
    this.#onLeave = o.onLeave ?? (() => {});
    this.#onJoin = o.onJoin ?? (() => {});
    this.#onRetire = o.onRetire ?? (() => {});
    this.#onAbandon = o.onAbandon ?? (() => {});
    this.#complete = o.complete ?? (() => false);
    this.#graceMs = o.replacementGraceMs ?? Number.POSITIVE_INFINITY;
    this.#identity = o.identity ?? {};
    this.#slots = Array.from({ length: o.totalWorkers }, (_, index) => this.#newSlot(index));
  }

  /** A slot nobody held yet, waiting a lease plus the grace for its first worker. */
  #newSlot(index: number): MutableSlot {
    return { ...newSlot(index), replaceBy: this.#now() + this.leaseMs + this.#graceMs };
  }

  /** How long a free slot whose worker is gone waits for a replacement. */
  get replacementGraceMs(): number {
    return this.#graceMs;
  }

  /** Every slot the run has had, retired ones included; index = slot id. */
  get slots(): readonly Slot[] {
    return this.#slots;
  }

  /** The run's worker count: slots not retired (finished ones included). */
  get workerCount(): number {
    return this.#slots.filter((s) => !s.retired).length;
  }

  /** The job fingerprint fixed by the first registration, if any. */
  get fingerprint(): string | undefined {
    return this.#fingerprint;
  }

  /** What a checkpoint keeps of each slot. */
  snapshot(): SlotRecord[] {
    return this.#slots.map((s) => ({
      registrations: s.registrations,
      pushes: s.pushes,
      finished: s.state === "finished",
      position: { ...s.appliedPosition },
      retired: s.retired,
    }));
  }

  /**
   * Restores slots from a checkpoint, worker count included (it may have been changed while the
   * run went on). Leases do not survive a restart: every unfinished slot is free until its worker
   * registers again, which it has a lease's time plus the replacement grace to do. A checkpoint
   * written before elastic scaling has no retired slots: then this run's configured count holds,
   * and slots beyond it are retired.
   */
  restore(records: readonly SlotRecord[], fingerprint: string | undefined): void {
    this.#fingerprint = fingerprint;
    const replaceBy = this.#now() + this.leaseMs + this.#graceMs;
    const configured = this.#slots.length;
    const elastic = records.some((r) => r.retired !== undefined);
    if (elastic) this.#slots.length = Math.min(this.#slots.length, records.length);
    while (this.#slots.length < records.length) this.#slots.push(this.#newSlot(this.#slots.length));
    this.#slots.forEach((slot, i) => {
      const r = records[i];
      if (r === undefined) return;
      slot.registrations = r.registrations;
      slot.pushes = r.pushes;
      slot.state = r.finished ? "finished" : "free";
      slot.token = "";
      slot.retired = r.retired ?? false;
      slot.position = { ...r.position };
      slot.appliedPosition = { ...r.position };
      slot.abandoned = false;
      slot.replaceBy = replaceBy;
    });
    if (records.length > 0 && !elastic) this.resize(configured);
  }

  /** Slots currently held by a live lease. */
  active(): Slot[] {
    return this.#slots.filter((s) => s.state === "active");
  }

  /** Live slots that steps wait for: not those waiting for the next epoch's data. */
  participating(): Slot[] {
    return this.#slots.filter(participates);
  }

  /** Marks a slot as waiting for data (or no longer); waits that depend on who participates re-check. */
  setIdle(slot: Slot, idle: boolean): void {
    const s = this.#own(slot);
    if (s.idle === idle) return;
    s.idle = idle;
    if (idle) this.#onLeave(slot, "idle");
  }

  /**
   * Sets the worker count to `count`. Fewer: retires slots, free ones first (highest index first),
   * then the highest live ones, which finish their current part of the data and then stop. More:
   * opens retired slots again (live ones first, which then simply carry on), then new slots.
   * Finished slots count towards the number and are never retired.
   */
  resize(count: number): { opened: number[]; retired: number[] } {
    if (!Number.isInteger(count) || count < 0 || count > MAX_WORKERS) {
      throw new ConnectError(`worker count ${count} is outside 0..${MAX_WORKERS}`, Code.InvalidArgument);
    }
    this.sweep();
    const opened: number[] = [];
    const retired: number[] = [];
    let members = this.workerCount;
    if (members > count) {
      const candidates = this.#slots
        .filter((s) => !s.retired && s.state !== "finished")
        .sort((a, b) => (a.state === b.state ? b.index - a.index : a.state === "free" ? -1 : 1));
      for (const slot of candidates.slice(0, members - count)) {
        this.#retire(slot);
        retired.push(slot.index);
      }
    } else if (members < count) {
      const reopenable = this.#slots
        .filter((s) => s.retired && s.state !== "finished")
        .sort((a, b) => (a.state === b.state ? a.index - b.index : a.state === "active" ? -1 : 1));
      for (const slot of reopenable) {
        if (members >= count) break;
        slot.retired = false;
        if (slot.state === "free") {
          // Its data went to the others when it was retired; it waits for a new worker like a new slot.
          slot.part = undefined;
          slot.abandoned = false;
          slot.replaceBy = this.#now() + this.leaseMs + this.#graceMs;
        }
        opened.push(slot.index);
        members++;
      }
      for (; members < count; members++) {
        const slot = this.#newSlot(this.#slots.length);
        this.#slots.push(slot);
        opened.push(slot.index);
      }
    }
    return { opened, retired };
  }

  #retire(slot: MutableSlot): void {
    slot.retired = true;
    this.#onRetire(slot);
  }

  /**
   * A member slot lost its worker while a retired one still has a live worker finishing its part:
   * swap them, so the run keeps `count` live workers instead of one fewer — with ECS, the task the
   * service stopped is seldom the slot the server chose to retire.
   */
  #swapRetirement(freed: MutableSlot): void {
    if (freed.retired) return;
    const retiring = this.#slots.find((s) => s.retired && s.state === "active");
    if (retiring === undefined) return;
    retiring.retired = false;
    this.#retire(freed);
  }

  /**
   * Hands out a free slot: `preferred` if it is free, else the lowest free one — or, with `exact`,
   * only `preferred` (a sharded run's worker must hold the same slot on every shard). The first
   * registration fixes the run's job fingerprint; later ones must match it.
   */
  register(preferred: number, fingerprint: string, label: string, exact = false): Slot {
    this.sweep();
    if (this.#complete()) {
      throw refusal("the run is complete: every part of the data is trained", Code.FailedPrecondition, ErrorReason.RUN_COMPLETE);
    }
    const slots = this.#slots;
    const mismatch = identityMismatch(fingerprint, this.#identity, this.#fingerprint);
    if (mismatch !== undefined) {
      throw refusal(
        `this worker's job differs from the run's: ${mismatch}; every worker must use the same dataset, model, seed, batch size and epochs`,
        Code.FailedPrecondition,
        ErrorReason.JOB_MISMATCH,
      );
    }
    if (preferred >= slots.length) {
      throw new ConnectError(
        `preferred slot ${preferred} does not exist: the run has ${slots.length} slots (0..${slots.length - 1})`,
        Code.InvalidArgument,
      );
    }
    const available = (s: Slot | undefined) => s?.state === "free" && !s.retired;
    const wanted = preferred >= 0 ? slots[preferred] : undefined;
    if (exact && !available(wanted)) {
      if (wanted === undefined) throw new ConnectError("require_preferred_slot needs a preferred slot (got -1)", Code.InvalidArgument);
      if (wanted.state === "finished") throw new ConnectError(`slot ${preferred} has finished on this shard`, Code.FailedPrecondition);
      if (wanted.retired) throw new ConnectError(`slot ${preferred} was retired on this shard (the worker count was lowered)`, Code.FailedPrecondition);
      throw new ConnectError(
        `slot ${preferred} is held by a live lease on this shard; it frees up when that lease (${this.leaseMs} ms) runs out`,
        Code.ResourceExhausted,
      );
    }
    const slot = available(wanted) ? wanted : slots.find(available);
    if (slot === undefined) {
      const members = slots.filter((s) => !s.retired);
      const finished = members.filter((s) => s.state === "finished").length;
      throw new ConnectError(
        `no free slot: ${members.length - finished} of the run's ${members.length} worker slots are held by live workers and ` +
          `${finished} have finished; a slot frees up when its worker's lease (${this.leaseMs} ms) runs out, or when the worker count is raised`,
        Code.ResourceExhausted,
      );
    }
    this.#fingerprint ??= fingerprint;
    const replacement = slot.registrations > 0;
    const now = this.#now();
    slot.state = "active";
    slot.token = randomUUID();
    slot.label = label;
    slot.lastSeen = now;
    slot.leaseExpiresAt = now + this.leaseMs;
    slot.registrations++;
    slot.idle = false;
    slot.replaceBy = Number.POSITIVE_INFINITY;
    slot.abandoned = false;
    this.#onJoin(slot, replacement);
    return slot;
  }

  /**
   * The slot a session refers to, renewing its lease. Throws FailedPrecondition when the session is
   * unknown, expired, or superseded by a newer registration of the same slot.
   */
  authenticate(session: WorkerSession | undefined): Slot {
    return this.#authenticate(session);
  }

  #authenticate(session: WorkerSession | undefined): MutableSlot {
    if (session === undefined) throw new ConnectError("request has no worker session", Code.InvalidArgument);
    this.sweep();
    const slot = this.#slots[session.slot];
    if (slot === undefined) {
      throw new ConnectError(`slot ${session.slot} does not exist (the run has ${this.#slots.length})`, Code.FailedPrecondition);
    }
    if (slot.token === "" || slot.token !== session.token) {
      throw new ConnectError(
        `session for slot ${session.slot} is not current (${slot.state === "finished" ? "the slot has finished" : "its lease expired or the slot was re-registered"}); register again`,
        Code.FailedPrecondition,
      );
    }
    const now = this.#now();
    slot.lastSeen = now;
    slot.leaseExpiresAt = now + this.leaseMs;
    return slot;
  }

  /**
   * Renews `slot`'s lease if `token` still holds it — called for every chunk of a long upload, so
   * a worker streaming a large gradient over a slow link is not mistaken for a dead one.
   */
  renew(slot: Slot, token: string): void {
    const s = this.#own(slot);
    if (s.state !== "active" || s.token !== token) return;
    const now = this.#now();
    s.lastSeen = now;
    s.leaseExpiresAt = now + this.leaseMs;
  }

  /** `slot` trains `part` now (NextAssignment). */
  assign(slot: Slot, part: Part | undefined): void {
    this.#own(slot).part = part;
  }

  /** The latest metrics `slot`'s worker reported (the dashboard, the status line, the summary). */
  reportMetrics(slot: Slot, metrics: WorkerMetrics): void {
    this.#own(slot).latestMetrics = metrics;
  }

  /**
   * A gradient of `slot` was accepted — it may still wait in an open sync step, but it will be
   * applied: a replacement worker continues after it.
   */
  accepted(slot: Slot, progress: Progress | undefined): void {
    if (progress === undefined) return;
    this.#own(slot).position = progress.position;
    progress.accepted();
  }

  /**
   * A gradient of `slot` is in the parameters: it counts, and its position is what a checkpoint
   * keeps. Called before the update is made, so a checkpoint taken as it lands sees both.
   */
  applied(slot: Slot, progress: Progress | undefined): void {
    const s = this.#own(slot);
    s.pushes++;
    if (progress === undefined) return;
    s.appliedPosition = progress.position;
    progress.applied();
  }

  /** A sync step was applied without a gradient of `slot`: it straggled past SYNC_TIMEOUT_MS. */
  missedStep(slot: Slot): void {
    this.#own(slot).stepsMissed++;
  }

  /** The slot itself, for changing it: only slots of this membership are accepted. */
  #own(slot: Slot): MutableSlot {
    const own = this.#slots[slot.index];
    if (own !== slot) throw new Error(`slot ${slot.index} is not one of this run's slots`);
    return own;
  }

  /** Marks the session's slot finished; it leaves the barrier and is not handed out again. */
  finish(session: WorkerSession | undefined): Slot {
    const slot = this.#authenticate(session);
    slot.state = "finished";
    slot.token = "";
    slot.idle = false;
    this.#onLeave(slot, "finished");
    return slot;
  }

  /** Frees the session's slot at once (its worker is being stopped), as a lease running out would. */
  leave(session: WorkerSession | undefined): Slot {
    const slot = this.#authenticate(session);
    this.#free(slot, "left");
    return slot;
  }

  /**
   * Frees every slot whose lease ran out, and abandons every free slot whose wait for a replacement
   * ran out. Returns the slots freed.
   */
  sweep(): Slot[] {
    const now = this.#now();
    const expired = this.#slots.filter((s) => s.state === "active" && s.leaseExpiresAt <= now);
    for (const slot of expired) this.#free(slot, "lease expired");
    for (const slot of this.#slots) {
      if (slot.state === "free" && !slot.retired && !slot.abandoned && slot.replaceBy <= now) {
        slot.abandoned = true;
        this.#onAbandon(slot);
      }
    }
    return expired;
  }

  #free(slot: MutableSlot, reason: "lease expired" | "left"): void {
    slot.state = "free";
    slot.token = "";
    slot.idle = false;
    slot.replaceBy = this.#now() + this.#graceMs;
    this.#swapRetirement(slot);
    this.#onLeave(slot, reason);
  }
}

