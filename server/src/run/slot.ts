/**
 * A worker slot: the seat a worker holds with its lease, kept across the workers that come and go in
 * it (see membership.ts), and what a checkpoint keeps of it.
 *
 * The rest of the server sees a `Slot`, read-only: every change goes through Membership, so a
 * slot's state can be followed from one file.
 */
import type { WorkerMetrics } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import type { Part } from "./part.ts";

export type SlotState = "free" | "active" | "finished";

/** A slot as Membership holds it (the only module that changes one). */
export interface MutableSlot {
  readonly index: number;
  state: SlotState;
  /** Token of the current holder; "" when nobody holds the slot. */
  token: string;
  label: string;
  /** Milliseconds (per `now`) at which the lease runs out. */
  leaseExpiresAt: number;
  /** Milliseconds (per `now`) of the holder's last call; 0 if never held. */
  lastSeen: number;
  /** Free slots: when (per `now`) the slot stops waiting for a worker and its data goes to the others. */
  replaceBy: number;
  /** Free past replaceBy: its data went to the others; a worker registering into it starts afresh. */
  abandoned: boolean;
  registrations: number;
  /** Gradients from this slot that are in the parameters, across all of its holders. */
  pushes: number;
  /** Sync steps applied without a gradient of this slot, which had not come within SYNC_TIMEOUT_MS; since the server started. */
  stepsMissed: number;
  /**
   * Data position after the slot's latest accepted gradient, including one still waiting in an open
   * sync step: where a replacement worker continues (that gradient will still be applied).
   */
  position: { epoch: number; batch: number };
  /** Data position after the slot's latest gradient that is in the parameters: what checkpoints keep. */
  appliedPosition: { epoch: number; batch: number };
  latestMetrics: WorkerMetrics | undefined;
  /** Not part of the run's worker count: not handed out; an active holder stops after its part. */
  retired: boolean;
  /** Its worker is waiting for the next epoch's data: no synchronous step waits for it meanwhile. */
  idle: boolean;
  /** The part of the data the slot trains now (NextAssignment). */
  part: Part | undefined;
}

/** A slot as everything but Membership sees it. */
export type Slot = Readonly<MutableSlot>;

/** A slot as a checkpoint records it. */
export interface SlotRecord {
  registrations: number;
  pushes: number;
  finished: boolean;
  position: { epoch: number; batch: number };
  /** Absent in checkpoints written before elastic scaling. */
  retired?: boolean;
}

/**
 * Whether `slot` is free but a worker is expected in it (its first, or a replacement) before its
 * wait runs out. Such a slot keeps its data, and gets a part of a new epoch.
 */
export function awaitingWorker(slot: Slot): boolean {
  return slot.state === "free" && !slot.retired && !slot.abandoned;
}

/** Whether steps wait for `slot`: it is held by a live lease and not waiting for the next epoch's data. */
export function participates(slot: Slot): boolean {
  return slot.state === "active" && !slot.idle;
}

/** A slot nobody has held yet. */
export function newSlot(index: number): MutableSlot {
  return {
    index,
    state: "free",
    token: "",
    label: "",
    leaseExpiresAt: 0,
    lastSeen: 0,
    replaceBy: Number.POSITIVE_INFINITY,
    abandoned: false,
    registrations: 0,
    pushes: 0,
    stepsMissed: 0,
    position: { epoch: 0, batch: 0 },
    appliedPosition: { epoch: 0, batch: 0 },
    latestMetrics: undefined,
    retired: false,
    idle: false,
    part: undefined,
  };
}
