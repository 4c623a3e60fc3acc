/**
 * The start quorum: training starts once the parameters exist and every unfinished slot has
 * registered with this server process, or START_TIMEOUT_MS after the first registration (then with
 * those present; latecomers join as they come). Starting together keeps the first steps — also the
 * first after a restart from a checkpoint — from being computed by whoever happened to connect first.
 */
import type { Logger } from "@distributed-ps/common/log.ts";
import type { Membership } from "./membership.ts";

export class StartQuorum {
  readonly #membership: Membership;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  readonly #now: () => number;
  /** When the first worker registered; the timeout counts from it. */
  #firstRegistrationAt: number | undefined;
  /** Slots registered since this server process started (a restored run counts from zero). */
  readonly #joined = new Set<number>();
  #started = false;

  constructor(o: { membership: Membership; timeoutMs: number; log: Logger; now: () => number }) {
    this.#membership = o.membership;
    this.#timeoutMs = o.timeoutMs;
    this.#log = o.log;
    this.#now = o.now;
  }

  /** A worker registered into `slot`. */
  joined(slot: number): void {
    this.#firstRegistrationAt ??= this.#now();
    this.#joined.add(slot);
  }

  /** Whether training may start (`initialized`: the parameters exist); once true, always true. */
  started(initialized: boolean): boolean {
    if (this.#started) return true;
    if (!initialized || this.#firstRegistrationAt === undefined) return false;
    const membership = this.#membership;
    // Abandoned slots are not waited for: nobody came for them in a lease plus the grace.
    const everyone = membership.slots.every((s) => s.retired || s.abandoned || s.state === "finished" || this.#joined.has(s.index));
    if (!everyone && this.#now() - this.#firstRegistrationAt < this.#timeoutMs) return false;
    this.#started = true;
    this.#log.info(
      everyone
        ? `all ${membership.workerCount} workers registered: training starts`
        : `start timeout (${this.#timeoutMs} ms): training starts with ${membership.active().length} of ${membership.workerCount} workers`,
    );
    return true;
  }

  /** Time left before the timeout, in milliseconds. */
  timeoutLeftMs(): number {
    if (this.#firstRegistrationAt === undefined) return this.#timeoutMs;
    return Math.max(0, this.#timeoutMs - (this.#now() - this.#firstRegistrationAt));
  }
}
