/**
 * How one push moves its worker through the data: the data position after its gradient, and the
 * part of the epoch that gradient belongs to.
 *
 * It moves twice: when the gradient is accepted (where a replacement would continue, though the
 * gradient may still wait in an open sync step) and when it is in the parameters (what a checkpoint
 * keeps). Membership moves the slot (`accepted`, `applied`); this moves the part.
 */
import type { Part } from "./part.ts";

export class Progress {
  /** The part the slot trains, when it works through NextAssignment. */
  readonly part: Part | undefined;
  readonly position: { readonly epoch: number; readonly batch: number };
  /** Minibatches in the part (0: not reported). */
  readonly batches: number;
  readonly examples: number;

  constructor(part: Part | undefined, position: { epoch: number; batch: number; batches: number }, examples: number) {
    this.part = part;
    this.position = { epoch: position.epoch, batch: position.batch };
    this.batches = position.batches;
    this.examples = examples;
  }

  /** The part's position once the gradient is accepted; it is complete after its last batch. */
  accepted(): void {
    const part = this.part;
    if (part === undefined) return;
    part.batch = Math.max(part.batch, this.position.batch);
    if (this.batches > 0) part.batches = this.batches;
    part.complete = part.batches !== undefined && part.batch >= part.batches;
  }

  /** The part's applied position and examples once the gradient is in the parameters. */
  applied(): void {
    if (this.part === undefined) return;
    this.part.appliedBatch = Math.max(this.part.appliedBatch, this.position.batch);
    this.part.examples += this.examples;
  }
}
