/**
 * Asynchronous training: every gradient is applied the moment it has arrived, against whatever the
 * parameters are by then. A gradient computed more than MAX_STALENESS versions ago is refused with
 * Aborted (the worker pulls and computes again) rather than silently dropped or applied.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Membership } from "../run/membership.ts";
import type { Slot } from "../run/slot.ts";
import type { ReceivedGradient } from "../run/received-gradient.ts";
import type { Updater } from "../run/updater.ts";
import type { Aggregator, ModeName, Push, PushOutcome } from "./aggregator.ts";

export class AsyncApply implements Aggregator {
  readonly mode: ModeName = "async";
  staleRejected = 0;
  protected readonly updater: Updater;
  protected readonly membership: Membership;
  readonly #maxStaleness: number;

  constructor(o: { updater: Updater; membership: Membership; maxStaleness: number }) {
    this.updater = o.updater;
    this.membership = o.membership;
    this.#maxStaleness = o.maxStaleness;
  }

  admit(_slot: Slot, baseVersion: number): void {
    const version = this.updater.store.version;
    if (baseVersion > version) {
      throw new ConnectError(`gradient claims version ${baseVersion}, but the parameters are at version ${version}`, Code.InvalidArgument);
    }
    const staleness = version - baseVersion;
    if (staleness > this.#maxStaleness) {
      this.staleRejected++;
      throw new ConnectError(
        `gradient computed at version ${baseVersion} is ${staleness} versions stale (limit ${this.#maxStaleness}); pull the parameters and compute again`,
        Code.Aborted,
      );
    }
  }

  async submit(push: Push, gradient: ReceivedGradient): Promise<PushOutcome> {
    try {
      this.admit(push.slot, push.baseVersion);
      const staleness = this.updater.store.version - push.baseVersion;
      // Bookkeeping first: a checkpoint taken when the update lands must see the position with it.
      this.membership.accepted(push.slot, push.progress);
      this.membership.applied(push.slot, push.progress);
      const version = this.updater.apply([gradient.tensors]);
      return { version, staleness, contributors: 1 };
    } finally {
      gradient.release();
    }
  }

  onJoin(_slot: Slot, _replacement: boolean): void {}
  restart(_version: number): void {}
  onLeave(): void {}
  close(): void {}
}
