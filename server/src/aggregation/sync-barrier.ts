/**
 * Synchronous training: a real barrier per step.
 *
 * Step t collects at most one gradient per slot, each computed against version t. The step is
 * applied, as the average of the gradients received, once every live (active) slot has pushed —
 * slots whose lease runs out or that finish stop being waited for — or when SYNC_TIMEOUT_MS has
 * passed since the step's first gradient (the straggler bound). A push returns only after its step
 * was applied, so the next pull is guaranteed to include the step's update.
 *
 * The step's gradients are summed in slot order, whatever order they arrive in: floating-point
 * addition is not associative, and a sum in arrival order would make runs (and a sharded run
 * against an unsharded one) differ in the last bits. The gradients are kept until the step is
 * applied, and the optimizer sums them inside its own pass over the parameters (simd.ts): adding
 * each into a running sum on arrival cost two extra passes over memory per gradient.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Progress } from "../run/progress.ts";
import type { Logger } from "@distributed-ps/common/log.ts";
import type { Membership } from "../run/membership.ts";
import { participates, type Slot } from "../run/slot.ts";
import type { ReceivedGradient } from "../run/received-gradient.ts";
import type { Updater } from "../run/updater.ts";
import type { Aggregator, Push, PushOutcome } from "./aggregator.ts";

interface PendingStep {
  step: number;
  pushed: Set<number>;
  /** How far each pushed gradient moves its slot through the data, recorded when the step is applied. */
  progress: Map<number, Progress | undefined>;
  /** The gradients in the order they will be summed. */
  ordered: ReceivedGradient[];
  /** Gradients not yet in `ordered`, waiting for a lower slot's to be placed first. */
  held: Map<number, ReceivedGradient>;
  /** Every slot below this one has had its gradient placed in `ordered`, or was not live to push one. */
  next: number;
  timer: NodeJS.Timeout | undefined;
  done: Promise<PushOutcome>;
  resolve: (o: PushOutcome) => void;
  reject: (e: Error) => void;
}

export class SyncBarrier implements Aggregator {
  readonly mode = "sync";
  staleRejected = 0;
  readonly #updater: Updater;
  readonly #membership: Membership;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  #pending: PendingStep;

  constructor(o: { updater: Updater; membership: Membership; syncTimeoutMs: number; log: Logger }) {
    this.#updater = o.updater;
    this.#membership = o.membership;
    this.#timeoutMs = o.syncTimeoutMs;
    this.#log = o.log;
    this.#pending = this.#open(o.updater.store.version);
  }

  #open(step: number): PendingStep {
    let resolve!: (o: PushOutcome) => void;
    let reject!: (e: Error) => void;
    const done = new Promise<PushOutcome>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    done.catch(() => {}); // a step nobody awaits must not become an unhandled rejection
    return { step, pushed: new Set(), progress: new Map(), ordered: [], held: new Map(), next: 0, timer: undefined, done, resolve, reject };
  }

  /** The slots whose gradient the open step holds so far. */
  get pushedThisStep(): ReadonlySet<number> {
    return this.#pending.pushed;
  }

  admit(slot: Slot, baseVersion: number): void {
    const step = this.#pending.step;
    if (baseVersion < step) {
      this.staleRejected++;
      throw new ConnectError(
        `gradient for step ${baseVersion} arrived after that step was applied (current step ${step}); pull the parameters and compute again`,
        Code.Aborted,
      );
    }
    if (baseVersion > step) {
      throw new ConnectError(`gradient claims step ${baseVersion}, but the current step is ${step}`, Code.InvalidArgument);
    }
    if (this.#pending.pushed.has(slot.index)) {
      throw new ConnectError(`slot ${slot.index} already pushed a gradient for step ${step}; it is counted once`, Code.AlreadyExists);
    }
  }

  async submit(push: Push, gradient: ReceivedGradient): Promise<PushOutcome> {
    try {
      this.admit(push.slot, push.baseVersion);
    } catch (err) {
      gradient.release();
      throw err;
    }
    const p = this.#pending;
    p.pushed.add(push.slot.index);
    this.#membership.accepted(push.slot, push.progress);
    p.progress.set(push.slot.index, push.progress);
    if (p.pushed.size === 1) p.timer = setTimeout(() => this.#expire(p), this.#timeoutMs);
    p.held.set(push.slot.index, gradient);
    this.#placeInSlotOrder(p, false);
    this.#completeIfReady();

    const aborted = new Promise<never>((_, reject) => {
      const onAbort = () => {
        const expired = push.signal.reason instanceof ConnectError && push.signal.reason.code === Code.DeadlineExceeded;
        reject(
          expired
            ? new ConnectError("the push's deadline passed while it waited for the step's barrier; the gradient still counts", Code.DeadlineExceeded)
            : new ConnectError("push cancelled while waiting for the step's barrier; the gradient still counts", Code.Canceled),
        );
      };
      if (push.signal.aborted) onAbort();
      else push.signal.addEventListener("abort", onAbort, { once: true });
      p.done.finally(() => push.signal.removeEventListener("abort", onAbort)).catch(() => {});
    });
    aborted.catch(() => {});
    return Promise.race([p.done, aborted]);
  }

  onJoin(): void {}

  restart(version: number): void {
    clearTimeout(this.#pending.timer);
    for (const g of [...this.#pending.ordered, ...this.#pending.held.values()]) g.release();
    this.#pending = this.#open(version);
  }

  onLeave(): void {
    this.#completeIfReady();
  }

  close(): void {
    clearTimeout(this.#pending.timer);
    this.#pending.reject(new ConnectError("server is shutting down", Code.Unavailable));
  }

  #completeIfReady(): void {
    const p = this.#pending;
    if (p.pushed.size === 0) return;
    if (this.#membership.participating().every((s) => p.pushed.has(s.index))) this.#apply(p);
  }

  /**
   * Places held gradients in the summing order by slot, as far as the lowest live slot that has not
   * pushed yet; with `all`, every held gradient (the step is being applied).
   */
  #placeInSlotOrder(p: PendingStep, all: boolean): void {
    const slots = this.#membership.slots;
    for (; p.next < slots.length; p.next++) {
      const g = p.held.get(p.next);
      if (g !== undefined) {
        p.ordered.push(g);
        p.held.delete(p.next);
      } else if (!all && participates(slots[p.next]!)) {
        return;
      }
    }
    // Gradients from slots passed over while not live (a replacement that joined mid-step), in slot order.
    for (const index of [...p.held.keys()].sort((a, b) => a - b)) p.ordered.push(p.held.get(index)!);
    p.held.clear();
  }

  #expire(p: PendingStep): void {
    if (p !== this.#pending) return;
    const missing = this.#membership.participating().filter((s) => !p.pushed.has(s.index));
    for (const slot of missing) this.#membership.missedStep(slot);
    this.#log.warn(
      `step ${p.step}: applying with ${p.pushed.size} gradient(s) after ${this.#timeoutMs} ms; no gradient from slot(s) ${missing.map((s) => s.index).join(", ")} (stragglers)`,
    );
    this.#apply(p);
  }

  #apply(p: PendingStep): void {
    clearTimeout(p.timer);
    this.#placeInSlotOrder(p, true);
    const contributors = p.pushed.size;
    // Counts and positions first: a checkpoint taken when the update lands must see them with it
    // (and a gradient that never made it into the parameters is not counted).
    for (const index of p.pushed) this.#membership.applied(this.#membership.slots[index]!, p.progress.get(index));
    const version = this.#updater.apply(p.ordered.map((g) => g.tensors), 1 / contributors);
    for (const g of p.ordered) g.release();
    this.#pending = this.#open(version);
    p.resolve({ version, staleness: 0, contributors });
  }
}
