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
 * Writes `data`, resolving once the stream can take more ('drain') or has closed. Writing to a
 * closed stream does nothing: the caller learns why from the stream's status.
 */
export async function writeWithBackpressure(stream: DrainableStream, data: Uint8Array): Promise<void> {
  for (let offset = 0; offset < data.length; offset += WRITE_SLICE_BYTES) {
    await writeSlice(stream, offset === 0 && data.length <= WRITE_SLICE_BYTES ? data : data.subarray(offset, offset + WRITE_SLICE_BYTES));
  }
}

function writeSlice(stream: DrainableStream, data: Uint8Array): Promise<void> {
  if (stream.destroyed || stream.closed === true) return Promise.resolve();
  if (stream.write(data)) return Promise.resolve();
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
