/**
 * Writing to an HTTP/2 stream with back-pressure, for the hand-framed gRPC paths on both sides
 * (the server's pulls, the worker's pulls and pushes): a megabyte chunk is written only once the
 * stream has taken the previous one, so a slow peer does not make the writer buffer the model.
 */

/** What the write needs of a stream: a server response or a client stream of node:http2. */
export interface DrainableStream {
  readonly destroyed: boolean;
  /** Client streams have it; a server response does not (`destroyed` says it there). */
  readonly closed?: boolean;
  write(data: Uint8Array): boolean;
  /** Node's Writable cork()/uncork(): writes in between go out together (one writev). */
  cork?(): void;
  uncork?(): void;
  once(event: "drain" | "close", listener: () => void): unknown;
  off(event: "drain" | "close", listener: () => void): unknown;
}

/**
 * The most a write hands to node:http2 at once. Data queued in a stream that the peer then resets
 * stays counted against the session's memory bound (maxSessionMemory) for good — a Node.js
 * accounting leak, measured: 4 MiB chunks queued whole made a connection refuse every new stream
 * (ENHANCE_YOUR_CALM) after 3 cancelled pulls. Handed over in slices, at most one slice per stream
 * is ever queued.
 */
export const WRITE_SLICE_BYTES = 256 << 10;

/**
 * Writes `data` — one array, or several written in order — resolving once the stream can take more
 * ('drain') or has closed. Writing to a closed stream does nothing: the caller learns why from the
 * stream's status. A message's pieces (its framing, then its data) go in one call, which waits
 * only when the stream is full. Pieces of at most WRITE_SLICE_BYTES in all are handed over
 * together (corked: one writev into node:http2 instead of one write per piece — a small model's
 * whole push or answer, where the per-write cost is most of the cost).
 */
export async function writeWithBackpressure(stream: DrainableStream, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
  if (data instanceof Uint8Array) data = [data];
  if (data.length > 1 && stream.cork !== undefined && stream.uncork !== undefined && totalBytes(data) <= WRITE_SLICE_BYTES) {
    if (stream.destroyed || stream.closed === true) return;
    stream.cork();
    let more = true;
    for (const piece of data) more = stream.write(piece);
    stream.uncork();
    if (!more) await drained(stream);
    return;
  }
  for (const piece of data) {
    for (let offset = 0; offset < piece.length; offset += WRITE_SLICE_BYTES) {
      if (stream.destroyed || stream.closed === true) return;
      const slice = offset === 0 && piece.length <= WRITE_SLICE_BYTES ? piece : piece.subarray(offset, offset + WRITE_SLICE_BYTES);
      if (!stream.write(slice)) await drained(stream);
    }
  }
}

function totalBytes(pieces: readonly Uint8Array[]): number {
  let n = 0;
  for (const p of pieces) n += p.length;
  return n;
}

/** Resolves on the stream's next 'drain' or its 'close'. */
function drained(stream: DrainableStream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.once("drain", done);
    stream.once("close", done);
  });
}
