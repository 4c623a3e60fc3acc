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
import { newPart, type Part, type PartRecord } from "./part.ts";

/** What NextAssignment answers: a part to train, nothing left, stop (retired), or ask again. */
export type Assignment = { kind: "train"; part: Part } | { kind: "done" } | { kind: "retire" } | { kind: "wait" };

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

  /**
   * Which part `slot` trains next, when the run trains `epochs` epochs. In order: the rest of a part
   * it already holds (a replacement continues where the slot was); stop, if retired; the rest of a
   * part whose slot was retired or abandoned (`adopted`); stop, once every part of every epoch is
   * trained; its part of the next epoch — beginning that epoch, cut among `members()` (`begun`), if
   * it has no plan yet and the slot has finished its part of the newest one (or holds none there:
   * everybody else's is done). Otherwise it waits.
   */
  assign(slot: { readonly index: number; readonly retired: boolean; readonly part: Part | undefined }, epochs: number, members: () => readonly number[]): { assignment: Assignment; adopted?: Part; begun?: readonly Part[] } {
    const held = this.heldBy(slot.index);
    if (held !== undefined && (!slot.retired || held === slot.part)) return { assignment: { kind: "train", part: held } };
    if (slot.retired) return { assignment: { kind: "retire" } };
    const orphan = this.orphan(epochs);
    if (orphan !== undefined) {
      orphan.holder = slot.index;
      return { assignment: { kind: "train", part: orphan }, adopted: orphan };
    }
    if (this.trainedThrough(epochs)) return { assignment: { kind: "done" } };
    const next = this.latest + 1;
    const newest = this.epoch(this.latest);
    const boundary = newest === undefined || newest.some((p) => p.plannedSlot === slot.index && p.holder === slot.index) || newest.every((p) => p.complete);
    if (next >= epochs || !boundary) return { assignment: { kind: "wait" } };
    const parts = this.begin(next, members());
    // The asking slot is live and not retired, so a member: it has a part of the new epoch.
    return { assignment: { kind: "train", part: parts.find((p) => p.holder === slot.index)! }, begun: parts };
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

