/**
 * Half-precision pulls of one version, encoded once. Every worker pulls every version, so encoding
 * per pull repeated the same conversion of the whole model (~25 ms for 11.2M values) once per worker
 * and step, which made fp16 pulls slower than fp32 ones although they move half the bytes. The first
 * fp16 (or bf16) pull of a version frames its chunks; the other pulls of that version and dtype
 * stream the very same bytes. An entry lives while pulls stream it and it is the newest of its dtype;
 * its memory is then reused for the next version.
 */
import { Dtype } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { ChunkFramings, frameTensorChunks } from "@distributed-ps/common/wire/grpc-framing.ts";
import type { Snapshot } from "../store/parameter-store.ts";

/** A pull's chunks as [prefix, data] pairs (see frameTensorChunks). */
export type FramedChunks = readonly (readonly [Buffer, Uint8Array])[];

interface Entry {
  version: number;
  dtype: Dtype;
  chunkBytes: number;
  chunks: FramedChunks;
  region: Uint8Array;
  readers: number;
}

export class EncodedPulls {
  readonly #framings: ChunkFramings;
  #entries: Entry[] = [];
  /** Regions of entries no pull needs any more, for the next version's bytes. */
  #spare: Uint8Array[] = [];

  /** Frames chunks with `framings` (prefixes kept from version to version). */
  constructor(framings = ChunkFramings.messages()) {
    this.#framings = framings;
  }

  /** The chunks of `snapshot` in the 16-bit `dtype`; call release() once they are written. */
  acquire(snapshot: Snapshot, dtype: Dtype, chunkBytes: number): { chunks: FramedChunks; release: () => void } {
    if (dtype !== Dtype.FLOAT16 && dtype !== Dtype.BFLOAT16) throw new RangeError(`EncodedPulls: ${Dtype[dtype]} is not a 16-bit dtype`);
    let entry = this.#entries.find((e) => e.version === snapshot.version && e.dtype === dtype && e.chunkBytes === chunkBytes);
    if (entry === undefined) {
      entry = this.#encode(snapshot, dtype, chunkBytes);
      this.#entries.push(entry);
      this.#prune();
    }
    const e = entry;
    e.readers++;
    let released = false;
    return {
      chunks: e.chunks,
      release: () => {
        if (released) return;
        released = true;
        e.readers--;
        this.#prune();
      },
    };
  }

  #encode(snapshot: Snapshot, dtype: Dtype, chunkBytes: number): Entry {
    const needed = snapshot.tensors.reduce((n, t) => n + t.data.length * 2, 0);
    const reusable = this.#spare.findIndex((r) => r.length === needed);
    const region = reusable >= 0 ? this.#spare.splice(reusable, 1)[0]! : new Uint8Array(needed);
    let used = 0;
    const bytes = (n: number) => region.subarray(used, (used += n)); // n is even: every piece stays 2-byte aligned
    const chunks = snapshot.tensors.flatMap((t) => [...frameTensorChunks(t, dtype, chunkBytes, bytes, this.#framings)]);
    return { version: snapshot.version, dtype, chunkBytes, chunks, region, readers: 0 };
  }

  /** Drops entries nobody streams that a newer entry of the same dtype has replaced. */
  #prune(): void {
    const newest = new Map<Dtype, number>();
    for (const e of this.#entries) newest.set(e.dtype, Math.max(newest.get(e.dtype) ?? -1, e.version));
    this.#entries = this.#entries.filter((e) => {
      const keep = e.readers > 0 || e.version === newest.get(e.dtype);
      if (!keep && this.#spare.length < 2) this.#spare.push(e.region);
      return keep;
    });
  }
}
