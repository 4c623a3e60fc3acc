/**
 * Reusable memory for the wire bytes of a push in a 16-bit dtype (float32 is sent as views of the
 * gradient itself). Allocating half the model's size afresh on every push, 1 MiB at a time, made
 * V8 run a full collection every few chunks (external memory pressure) — most of a worker's
 * garbage-collection time. One region, reused push after push, removes that.
 *
 * The bytes of a push may be overwritten only once the push is over (its stream closed: written or
 * abandoned), so the region is lent to one push at a time; a push that overlaps another gets fresh
 * arrays instead.
 */
export class WireArena {
  #region = new Uint8Array(0);
  /** Bytes the biggest push so far needed: the region's size from the next push on. */
  #needed = 0;
  #lent = false;

  /** Lends the region to a push: `bytes(n)` hands out n bytes (2-byte aligned) until `release()`. */
  lend(): { bytes: (n: number) => Uint8Array; release: () => void } {
    if (this.#lent) return { bytes: (n) => new Uint8Array(n), release: () => {} };
    this.#lent = true;
    if (this.#region.length < this.#needed) this.#region = new Uint8Array(this.#needed);
    const region = this.#region;
    let used = 0;
    let released = false;
    return {
      bytes: (n) => {
        const at = used + (used % 2);
        used = at + n;
        this.#needed = Math.max(this.#needed, used);
        return used <= region.length ? region.subarray(at, used) : new Uint8Array(n); // the first push sizes the region
      },
      release: () => {
        if (released) return;
        released = true;
        this.#lent = false;
      },
    };
  }
}
