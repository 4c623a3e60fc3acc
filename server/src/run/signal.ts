/**
 * Bounded waiting. Every wait in the server ends by one of: the awaited condition, its time bound,
 * or the caller going away (the RPC's abort signal). Nothing waits forever.
 */

export type WaitOutcome = "done" | "timeout" | "aborted";

/** A condition that can be re-checked; `notify()` wakes every waiter to check again. */
export class Signal {
  #waiters = new Set<() => void>();

  notify(): void {
    const ws = this.#waiters;
    this.#waiters = new Set();
    for (const w of ws) w();
  }

  /** Resolves when `ready()` holds, re-checking at every notify(); bounded by `timeoutMs` and `abort`. */
  async until(ready: () => boolean, timeoutMs: number, abort?: AbortSignal): Promise<WaitOutcome> {
    if (ready()) return "done";
    if (abort?.aborted) return "aborted";
    return new Promise<WaitOutcome>((resolve) => {
      const finish = (outcome: WaitOutcome) => {
        clearTimeout(timer);
        abort?.removeEventListener("abort", onAbort);
        this.#waiters.delete(check);
        resolve(outcome);
      };
      const check = () => {
        if (ready()) finish("done");
        else this.#waiters.add(check);
      };
      const onAbort = () => finish("aborted");
      const timer = setTimeout(() => finish(ready() ? "done" : "timeout"), timeoutMs);
      abort?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.add(check);
    });
  }
}
