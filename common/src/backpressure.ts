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
 * Writes `data`, resolving once the stream can take more ('drain') or has closed. Writing to a
 * closed stream does nothing: the caller learns why from the stream's status.
 */
export function writeWithBackpressure(stream: DrainableStream, data: Uint8Array): Promise<void> {
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
