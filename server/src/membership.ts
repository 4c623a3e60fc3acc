/**
 * Worker slots and their leases.
 *
 * A run has exactly TOTAL_WORKERS_EXPECTED slots. Registering takes a free slot and starts a lease;
 * every call the worker makes renews it. A worker silent for longer than the lease is gone: its
 * slot becomes free for a replacement (which inherits the slot's data position), and it leaves the
 * synchronous barrier. Slot ids therefore never grow past the worker count, however often workers
 * restart.
 */
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { WorkerMetrics, WorkerSession } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";

export type SlotState = "free" | "active" | "finished";

export interface Slot {
  readonly index: number;
  state: SlotState;
  /** Token of the current holder; "" when nobody holds the slot. */
  token: string;
  label: string;
  /** Milliseconds (per `now`) at which the lease runs out. */
  leaseExpiresAt: number;
  /** Milliseconds (per `now`) of the holder's last call; 0 if never held. */
  lastSeen: number;
  registrations: number;
  /** Gradients applied from this slot, across all of its holders. */
  pushes: number;
  /**
   * Data position after the slot's latest accepted gradient, including one still waiting in an open
   * sync step: where a replacement worker continues (that gradient will still be applied).
   */
  position: { epoch: number; batch: number };
  /** Data position after the slot's latest gradient that is in the parameters: what checkpoints keep. */
  appliedPosition: { epoch: number; batch: number };
  latestMetrics: WorkerMetrics | undefined;
}

export type LeaveReason = "lease expired" | "finished";

/** A slot as a checkpoint records it. */
export interface SlotRecord {
  registrations: number;
  pushes: number;
  finished: boolean;
  position: { epoch: number; batch: number };
}

export interface MembershipOptions {
  totalWorkers: number;
  leaseMs: number;
  /** Clock in milliseconds; injectable for tests. */
  now?: () => number;
  /** Called after a slot stops being active, so waits that depend on membership re-check. */
  onLeave?: (slot: Slot, reason: LeaveReason) => void;
  /** Called after a slot becomes active. */
  onJoin?: (slot: Slot, replacement: boolean) => void;
}

export class Membership {
  readonly slots: readonly Slot[];
  readonly leaseMs: number;
  readonly #now: () => number;
  readonly #onLeave: (slot: Slot, reason: LeaveReason) => void;
  readonly #onJoin: (slot: Slot, replacement: boolean) => void;
  #fingerprint: string | undefined;

  constructor(o: MembershipOptions) {
    this.leaseMs = o.leaseMs;
    this.#now = o.now ?? Date.now;
    this.#onLeave = o.onLeave ?? (() => {});
    this.#onJoin = o.onJoin ?? (() => {});
    this.slots = Array.from({ length: o.totalWorkers }, (_, index) => ({
      index,
      state: "free" as SlotState,
      token: "",
      label: "",
      leaseExpiresAt: 0,
      lastSeen: 0,
      registrations: 0,
      pushes: 0,
      position: { epoch: 0, batch: 0 },
      appliedPosition: { epoch: 0, batch: 0 },
      latestMetrics: undefined,
    }));
  }

  /** The job fingerprint fixed by the first registration, if any. */
  get fingerprint(): string | undefined {
    return this.#fingerprint;
  }

  /** What a checkpoint keeps of each slot. */
  snapshot(): SlotRecord[] {
    return this.slots.map((s) => ({
      registrations: s.registrations,
      pushes: s.pushes,
      finished: s.state === "finished",
      position: { ...s.appliedPosition },
    }));
  }

  /**
   * Restores slots from a checkpoint. Leases do not survive a restart: every unfinished slot is free
   * until its worker registers again. Slots beyond the checkpoint's count start fresh; a
   * checkpoint with more slots than this run keeps only the first ones.
   */
  restore(records: readonly SlotRecord[], fingerprint: string | undefined): void {
    this.#fingerprint = fingerprint;
    this.slots.forEach((slot, i) => {
      const r = records[i];
      if (r === undefined) return;
      slot.registrations = r.registrations;
      slot.pushes = r.pushes;
      slot.state = r.finished ? "finished" : "free";
      slot.token = "";
      slot.position = { ...r.position };
      slot.appliedPosition = { ...r.position };
    });
  }

  get runComplete(): boolean {
    return this.slots.every((s) => s.state === "finished");
  }

  /** Slots currently held by a live lease. */
  active(): Slot[] {
    return this.slots.filter((s) => s.state === "active");
  }

  /**
   * Hands out a free slot: `preferred` if it is free, else the lowest free one — or, with `exact`,
   * only `preferred` (a sharded run's worker must hold the same slot on every shard). The first
   * registration fixes the run's job fingerprint; later ones must match it.
   */
  register(preferred: number, fingerprint: string, label: string, exact = false): Slot {
    this.sweep();
    if (this.runComplete) {
      throw new ConnectError("the run is complete: every slot has finished", Code.FailedPrecondition);
    }
    if (this.#fingerprint !== undefined && fingerprint !== this.#fingerprint) {
      throw new ConnectError(
        `job fingerprint "${fingerprint}" differs from the run's "${this.#fingerprint}": ` +
          "every worker must use the same dataset, model, seed and batch size",
        Code.FailedPrecondition,
      );
    }
    if (preferred >= this.slots.length) {
      throw new ConnectError(
        `preferred slot ${preferred} does not exist: the run has ${this.slots.length} slots (0..${this.slots.length - 1})`,
        Code.InvalidArgument,
      );
    }
    const wanted = preferred >= 0 ? this.slots[preferred] : undefined;
    if (exact && wanted?.state !== "free") {
      if (wanted === undefined) throw new ConnectError("require_preferred_slot needs a preferred slot (got -1)", Code.InvalidArgument);
      if (wanted.state === "finished") throw new ConnectError(`slot ${preferred} has finished on this shard`, Code.FailedPrecondition);
      throw new ConnectError(
        `slot ${preferred} is held by a live lease on this shard; it frees up when that lease (${this.leaseMs} ms) runs out`,
        Code.ResourceExhausted,
      );
    }
    const slot = wanted?.state === "free" ? wanted : this.slots.find((s) => s.state === "free");
    if (slot === undefined) {
      const finished = this.slots.filter((s) => s.state === "finished").length;
      throw new ConnectError(
        `no free slot: ${this.slots.length - finished} of ${this.slots.length} slots are held by live workers and ` +
          `${finished} have finished; a slot frees up when its worker's lease (${this.leaseMs} ms) runs out`,
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
    this.#onJoin(slot, replacement);
    return slot;
  }

  /**
   * The slot a session refers to, renewing its lease. Throws FailedPrecondition when the session is
   * unknown, expired, or superseded by a newer registration of the same slot.
   */
  authenticate(session: WorkerSession | undefined): Slot {
    if (session === undefined) throw new ConnectError("request has no worker session", Code.InvalidArgument);
    this.sweep();
    const slot = this.slots[session.slot];
    if (slot === undefined) {
      throw new ConnectError(`slot ${session.slot} does not exist (the run has ${this.slots.length})`, Code.FailedPrecondition);
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
    if (slot.state !== "active" || slot.token !== token) return;
    const now = this.#now();
    slot.lastSeen = now;
    slot.leaseExpiresAt = now + this.leaseMs;
  }

  /** Marks the session's slot finished; it leaves the barrier and is not handed out again. */
  finish(session: WorkerSession | undefined): Slot {
    const slot = this.authenticate(session);
    slot.state = "finished";
    slot.token = "";
    this.#onLeave(slot, "finished");
    return slot;
  }

  /** Frees every slot whose lease ran out. Returns the slots freed. */
  sweep(): Slot[] {
    const now = this.#now();
    const expired = this.slots.filter((s) => s.state === "active" && s.leaseExpiresAt <= now);
    for (const slot of expired) {
      slot.state = "free";
      slot.token = "";
      this.#onLeave(slot, "lease expired");
    }
    return expired;
  }
}
