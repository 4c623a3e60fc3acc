/**
 * The HTTP/2 settings of every connection this project accepts or opens — the server's listener,
 * and the client's connection that the Connect stubs and the worker's bulk calls share — in one
 * place. Flow control: a pull moves the whole model and a push most of it, so neither a stream nor
 * the connection may stall a multi-megabyte chunk waiting for WINDOW_UPDATE frames. The listener
 * also bounds the streams a connection holds and the metadata a call carries.
 */
import type http2 from "node:http2";

/** The receive window of one stream (SETTINGS_INITIAL_WINDOW_SIZE). */
export const STREAM_WINDOW_BYTES = 16 << 20;
/** The receive window of a whole connection: what a peer may have in flight on it. */
export const CONNECTION_WINDOW_BYTES = 64 << 20;

/** SETTINGS for http2.createServer, http2.connect and Connect's transports (`nodeOptions.settings`). */
export const HTTP2_SETTINGS: http2.Settings = { initialWindowSize: STREAM_WINDOW_BYTES };

/**
 * The most request metadata (decoded header names and values, 32 bytes each more) a call may carry,
 * announced as SETTINGS_MAX_HEADER_LIST_SIZE: the server's own headers are a few hundred bytes. A
 * client that honours the setting does not send a call over it; the two measured here send it
 * anyway (@grpc/grpc-js 1.14, Python's grpcio 1.51), and the server refuses that call alone — a
 * reset of its stream (ENHANCE_YOUR_CALM, which both report as RESOURCE_EXHAUSTED) — while the
 * connection and its other calls carry on. What no setting reaches: a header block that nghttp2,
 * the HTTP/2 library inside Node.js, will not take at all — one field over 64 KiB as encoded (its
 * HPACK decoder's limit), or a block needing more than 8 CONTINUATION frames (its flood protection:
 * ~144 KiB in 16 KiB frames) — is a connection error there, with no option to change it.
 */
export const MAX_HEADER_LIST_BYTES = 64 << 10;

/** SETTINGS of the server's listener: the windows, at most `maxStreams` open streams per connection (MAX_STREAMS_PER_CONNECTION), the metadata bound. */
export function listenerSettings(maxStreams: number): http2.Settings {
  return { ...HTTP2_SETTINGS, maxConcurrentStreams: maxStreams, maxHeaderListSize: MAX_HEADER_LIST_BYTES };
}

/** Widens `session`'s connection-level receive window once it is connected (no SETTINGS field
 *  holds it: it is a WINDOW_UPDATE on stream 0). */
export function widenConnectionWindow(session: http2.Http2Session): void {
  const widen = () => session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
  if (session.connecting) session.once("connect", widen);
  else widen();
}
