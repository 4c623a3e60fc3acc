/**
 * A part of an epoch's data: the piece one slot was planned to train (see data-plan.ts), who trains
 * it now and how far it got; and what a checkpoint keeps of it.
 */

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

/** A part nobody has trained yet, held by the slot it is planned for. */
export function newPart(epoch: number, index: number, parts: number, plannedSlot: number): Part {
  return { epoch, index, parts, plannedSlot, holder: plannedSlot, batch: 0, appliedBatch: 0, batches: undefined, complete: false, examples: 0 };
}
