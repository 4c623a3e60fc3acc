/**
 * Stale synchronous parallel (SSP): gradients are applied on arrival as in async mode, but each slot
 * has a clock (its number of applied gradients) and a push returns only once the caller's clock is
 * at most STALENESS_BOUND ahead of the slowest live slot. Fast workers run ahead a little, never
 * far. The wait is bounded by SYNC_TIMEOUT_MS like the sync barrier.
 */
import type { Logger } from "@distributed-ps/common/log.ts";
import type { Membership } from "../run/membership.ts";
import type { Slot } from "../run/slot.ts";
import type { ReceivedGradient } from "../run/received-gradient.ts";
import type { Updater } from "../run/updater.ts";
import { Signal } from "../run/signal.ts";
import type { ModeName, Push, PushOutcome } from "./aggregator.ts";
import { AsyncApply } from "./async-apply.ts";

export class StaleSynchronous extends AsyncApply {
  override readonly mode: ModeName = "ssp";
  readonly #membership: Membership;
  readonly #bound: number;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  readonly #clocks = new Map<number, number>();
  readonly #changed = new Signal();
  #closed = new AbortController();

  constructor(o: {
    updater: Updater;
    membership: Membership;
    maxStaleness: number;
    stalenessBound: number;
    syncTimeoutMs: number;
    log: Logger;
  }) {
    super(o);
    this.#membership = o.membership;
    this.#bound = o.stalenessBound;
    this.#timeoutMs = o.syncTimeoutMs;
    this.#log = o.log;
  }

  clock(slot: number): number {
    return this.#clocks.get(slot) ?? 0;
  }

  /** Clock of the slowest live slot that is training (Infinity when none is). */
  slowestClock(): number {
    return Math.min(...this.#membership.participating().map((s) => this.clock(s.index)));
  }

  override async submit(push: Push, gradient: ReceivedGradient): Promise<PushOutcome> {
    const outcome = await super.submit(push, gradient);
    const mine = this.clock(push.slot.index) + 1;
    this.#clocks.set(push.slot.index, mine);
    this.#changed.notify();
    const signal = AbortSignal.any([push.signal, this.#closed.signal]);
    const result = await this.#changed.until(() => mine - this.slowestClock() <= this.#bound, this.#timeoutMs, signal);
    if (result === "timeout") {
      this.#log.warn(`slot ${push.slot.index} (clock ${mine}) waited ${this.#timeoutMs} ms for the slowest live worker (clock ${this.slowestClock()}); releasing it`);
    }
    return { ...outcome, version: this.updater.store.version };
  }

  override onJoin(slot: Slot, replacement: boolean): void {
    // A newcomer starts level with the slowest live worker instead of at 0, so joining late does
    // not stall everyone until it has caught up; a replacement keeps its slot's clock.
    if (!replacement || !this.#clocks.has(slot.index)) {
      const others = this.#membership.participating().filter((s) => s !== slot).map((s) => this.clock(s.index));
      this.#clocks.set(slot.index, others.length > 0 ? Math.min(...others) : 0);
    }
    this.#changed.notify();
  }

  override restart(): void {
    // Clocks are relative: after a restart everyone starts level.
    this.#clocks.clear();
    this.#changed.notify();
  }

  override onLeave(): void {
    this.#changed.notify();
  }

  override close(): void {
    this.#closed.abort();
  }
}
