/**
 * A queue that one side fills as data arrives and the other reads as an AsyncIterable: how the
 * fast push handler hands the messages it reads off the socket to the service's pushGradients,
 * which consumes an AsyncIterable. It reports its length so the producer can pause its source.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  readonly #items: T[] = [];
  #ended = false;
  #failure: { error: unknown } | undefined;
  #waiting: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  readonly #onDrain: () => void;

  /** `onDrain` is called whenever the reader takes an item (the producer may resume). */
  constructor(onDrain: () => void = () => {}) {
    this.#onDrain = onDrain;
  }

  get length(): number {
    return this.#items.length;
  }

  /** Whether end() or fail() was called: later pushes are ignored. */
  get closed(): boolean {
    return this.#ended || this.#failure !== undefined;
  }

  push(item: T): void {
    if (this.closed) return;
    const w = this.#waiting;
    if (w !== undefined) {
      this.#waiting = undefined;
      w.resolve({ value: item, done: false });
    } else {
      this.#items.push(item);
    }
  }

  end(): void {
    if (this.closed) return;
    this.#ended = true;
    this.#settleWaiting();
  }

  /** The reader gets `error` once it has taken what was queued before it. */
  fail(error: unknown): void {
    if (this.closed) return;
    this.#failure = { error };
    this.#settleWaiting();
  }

  #settleWaiting(): void {
    const w = this.#waiting;
    if (w === undefined) return;
    this.#waiting = undefined;
    if (this.#failure !== undefined) w.reject(this.#failure.error);
    else w.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.#items.length > 0) {
          const value = this.#items.shift()!;
          this.#onDrain();
          return Promise.resolve({ value, done: false });
        }
        if (this.#failure !== undefined) return Promise.reject(this.#failure.error);
        if (this.#ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => (this.#waiting = { resolve, reject }));
      },
    };
  }
}
