/**
 * Who trains which examples, epoch by epoch — what lets the number of workers change mid-run.
 *
 * When an epoch begins its data is cut into one part per live worker slot (the plan); the cut itself
 * is a pure function on the worker side (worker/src/data/partition.ts), so the server only keeps, per
 * part, which slot holds it and how far it got. Every example is in exactly one part, and a part is
 * trained once: by the slot it was planned for, by that slot's replacement (which continues from the
 * part's position), or — when the slot was retired, or its worker is gone and no replacement came
 * within the grace — by whichever worker runs out of its own work first. Retiring or adding slots therefore never loses or repeats an example within
 * an epoch; the next epoch is simply cut into a different number of parts.
 */
import type { Slot } from "./membership.ts";

export interface Part {
  readonly epoch: number;
  /** Which piece of the epoch's data, 0..parts-1. */
  readonly index: number;
  readonly parts: number;
  /** The slot it was planned for. */
  readonly plannedSlot: number;
  /** Slot training it now; undefined while nobody does (its slot was retired): up for adoption. */
  holder: number | undefined;
  /** Minibatches in gradients accepted so far (one may still wait in an open sync step). */
  batch: number;
  /** Minibatches in gradients that are in the parameters: what a checkpoint keeps. */
  appliedBatch: number;
  /** Minibatches the part has, as its worker reported; undefined until the first push says. */
  batches: number | undefined;
  complete: boolean;
  /** Training examples in gradients applied to the parameters. */
  examples: number;
}

/** What a checkpoint keeps of a part. */
export interface PartRecord {
  epoch: number;
  index: number;
  parts: number;
  plannedSlot: number;
  /** Undefined in a checkpoint only for parts waiting for adoption. */
  holder: number | undefined;
  batch: number;
  batches: number | undefined;
  examples: number;
}

/** The plans kept in memory and in checkpoints: older epochs are summarised once complete. */
const KEEP_EPOCHS = 512;

export class DataPlan {
  readonly #epochs = new Map<number, Part[]>();
  /** Newest epoch with a plan; -1 before the first. */
  latest = -1;

  /** Cuts epoch `epoch` into one part per slot of `slots` (ascending), each held by its slot. */
  begin(epoch: number, slots: readonly number[]): Part[] {
    if (this.#epochs.has(epoch)) throw new Error(`epoch ${epoch} already has a plan`);
    const parts = slots.map((slot, index) => newPart(epoch, index, slots.length, slot));
    this.#epochs.set(epoch, parts);
    this.latest = Math.max(this.latest, epoch);
    for (const old of this.#epochs.keys()) if (old <= this.latest - KEEP_EPOCHS) this.#epochs.delete(old);
    return parts;
  }

  epoch(epoch: number): readonly Part[] | undefined {
    return this.#epochs.get(epoch);
  }

  /** Every planned epoch's parts, oldest first. */
  *all(): Generator<[epoch: number, parts: readonly Part[]]> {
    yield* [...this.#epochs.entries()].sort((a, b) => a[0] - b[0]);
  }

  /** The oldest unfinished part `slot` holds. */
  heldBy(slot: number): Part | undefined {
    for (const [, parts] of this.all()) {
      const part = parts.find((p) => p.holder === slot && !p.complete);
      if (part !== undefined) return part;
    }
    return undefined;
  }

  /** The oldest unfinished part nobody holds, below epoch `before`. */
  orphan(before: number): Part | undefined {
    for (const [epoch, parts] of this.all()) {
      if (epoch >= before) break;
      const part = parts.find((p) => p.holder === undefined && !p.complete);
      if (part !== undefined) return part;
    }
    return undefined;
  }

  /** Gives up `slot`'s unfinished parts except `keep`: they go to whoever runs out of work first. */
  release(slot: number, keep?: Part): Part[] {
    const released: Part[] = [];
    for (const [, parts] of this.all()) {
      for (const p of parts) {
        if (p.holder === slot && !p.complete && p !== keep) {
          p.holder = undefined;
          released.push(p);
        }
      }
    }
    return released;
  }

  /** Per planned epoch, oldest first: parts, parts complete, examples in applied gradients. */
  summary(): { epoch: number; parts: number; partsComplete: number; examples: number }[] {
    return [...this.all()].map(([epoch, parts]) => ({
      epoch,
      parts: parts.length,
      partsComplete: parts.filter((p) => p.complete).length,
      examples: parts.reduce((n, p) => n + p.examples, 0),
    }));
  }

  /** Whether every part of epochs 0..epochs-1 has been planned and trained. */
  trainedThrough(epochs: number): boolean {
    if (this.latest < epochs - 1) return false;
    for (const [epoch, parts] of this.all()) if (epoch < epochs && parts.some((p) => !p.complete)) return false;
    return true;
  }

  snapshot(): PartRecord[] {
    const records: PartRecord[] = [];
    for (const [, parts] of this.all()) {
      for (const p of parts) {
        records.push({ epoch: p.epoch, index: p.index, parts: p.parts, plannedSlot: p.plannedSlot, holder: p.holder, batch: p.appliedBatch, batches: p.batches, examples: p.examples });
      }
    }
    return records;
  }

  /**
   * Restores the plans of a checkpoint. A gradient accepted but not applied when it was written is
   * not in the parameters, so each part continues from its applied position.
   */
  restore(records: readonly PartRecord[]): void {
    this.#epochs.clear();
    this.latest = -1;
    const byEpoch = new Map<number, PartRecord[]>();
    for (const r of records) byEpoch.set(r.epoch, [...(byEpoch.get(r.epoch) ?? []), r]);
    for (const [epoch, rs] of [...byEpoch].sort((a, b) => a[0] - b[0])) {
      const parts = rs
        .sort((a, b) => a.index - b.index)
        .map((r) => {
          const p = newPart(epoch, r.index, r.parts, r.plannedSlot);
          p.holder = r.holder ?? undefined;
          p.batch = p.appliedBatch = r.batch;
          p.batches = r.batches ?? undefined;
          p.complete = p.batches !== undefined && p.batch >= p.batches;
          p.examples = r.examples;
          return p;
        });
      this.#epochs.set(epoch, parts);
      this.latest = Math.max(this.latest, epoch);
    }
  }
}

/**
 * The plan of a checkpoint written before plans existed: then every epoch was cut into one part per
 * slot, part i trained by slot i, and each slot's data position said how far it had got.
 */
export function planFromPositions(slots: readonly { finished: boolean; position: { epoch: number; batch: number } }[]): PartRecord[] {
  const reached = slots.map((s) => (s.finished ? Number.POSITIVE_INFINITY : s.position.epoch));
  const newest = Math.max(...slots.map((s) => s.position.epoch));
  const records: PartRecord[] = [];
  for (let epoch = 0; epoch <= newest; epoch++) {
    slots.forEach((s, i) => {
      const done = epoch < reached[i]!;
      const batch = done ? 0 : epoch === s.position.epoch ? s.position.batch : 0;
      records.push({ epoch, index: i, parts: slots.length, plannedSlot: i, holder: i, batch, batches: done ? 0 : undefined, examples: 0 });
    });
  }
  return records;
}

function newPart(epoch: number, index: number, parts: number, plannedSlot: number): Part {
  return { epoch, index, parts, plannedSlot, holder: plannedSlot, batch: 0, appliedBatch: 0, batches: undefined, complete: false, examples: 0 };
}

/**
 * How one push moves its slot through the data: once when the gradient is accepted (where a
 * replacement would continue) and once when it is in the parameters (what a checkpoint keeps).
 */
export class Progress {
  readonly slot: Slot;
  /** The part the slot trains, when it works through NextAssignment. */
  readonly part: Part | undefined;
  readonly position: { epoch: number; batch: number };
  /** Minibatches in the part (0: not reported). */
  readonly batches: number;
  readonly examples: number;

  constructor(slot: Slot, part: Part | undefined, position: { epoch: number; batch: number; batches: number }, examples: number) {
    this.slot = slot;
    this.part = part;
    this.position = { epoch: position.epoch, batch: position.batch };
    this.batches = position.batches;
    this.examples = examples;
  }

  accepted(): void {
    this.slot.position = this.position;
    const part = this.part;
    if (part === undefined) return;
    part.batch = Math.max(part.batch, this.position.batch);
    if (this.batches > 0) part.batches = this.batches;
    part.complete = part.batches !== undefined && part.batch >= part.batches;
  }

  applied(): void {
    this.slot.appliedPosition = this.position;
    if (this.part === undefined) return;
    this.part.appliedBatch = Math.max(this.part.appliedBatch, this.position.batch);
    this.part.examples += this.examples;
  }
}
