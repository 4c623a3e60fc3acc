/**
 * Bounded waiting for the harnesses (the chaos suite's, the tests'): nothing here waits without an
 * abort signal or a time limit. Both helpers resolve (never reject), so that an aborted wait is an
 * ordinary answer.
 */

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => done(true), ms);
    const onAbort = () => done(false);
    function done(ok: boolean) {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      resolve(ok);
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Resolves true once `condition()` holds (checked every `pollMs`), or false when `signal` aborts or
 * `timeoutMs` passes, whichever comes first.
 */
export async function until(condition: () => boolean | Promise<boolean>, o: { signal?: AbortSignal; timeoutMs?: number; pollMs?: number }): Promise<boolean> {
  const end = o.timeoutMs === undefined ? Infinity : Date.now() + o.timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (o.signal?.aborted || Date.now() >= end) return false;
    if (!(await sleep(Math.min(o.pollMs ?? 50, Math.max(1, end - Date.now())), o.signal))) return condition();
  }
}

/** Runs callbacks one at a time, in call order. */
export class Mutex {
  #tail: Promise<void> = Promise.resolve();

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.#tail;
    let release!: () => void;
    this.#tail = new Promise((r) => (release = r));
    await previous;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
