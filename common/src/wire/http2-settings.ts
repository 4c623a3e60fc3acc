/**
 * The HTTP/2 flow-control settings of every connection this project accepts or opens — the server's
 * listener, and the client's connection that the Connect stubs and the worker's bulk calls share — in
 * one place. A pull moves the whole model and a push most of it: neither a stream nor the
 * connection may stall a multi-megabyte chunk waiting for WINDOW_UPDATE frames.
 */
import type http2 from "node:http2";

/** The receive window of one stream (SETTINGS_INITIAL_WINDOW_SIZE). */
export const STREAM_WINDOW_BYTES = 16 << 20;
/** The receive window of a whole connection: what a peer may have in flight on it. */
export const CONNECTION_WINDOW_BYTES = 64 << 20;

/** SETTINGS for http2.createServer, http2.connect and Connect's transports (`nodeOptions.settings`). */
export const HTTP2_SETTINGS: http2.Settings = { initialWindowSize: STREAM_WINDOW_BYTES };

/** Widens `session`'s connection-level receive window once it is connected (no SETTINGS field
 *  holds it: it is a WINDOW_UPDATE on stream 0). */
export function widenConnectionWindow(session: http2.Http2Session): void {
  const widen = () => session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
  if (session.connecting) session.once("connect", widen);
  else widen();
}
