/**
 * What one client can hold on the gRPC listener. The rules act on connections and HTTP/2 streams,
 * below the handlers, so they hold for every call whichever handler serves it (the Connect router,
 * fast-pull.ts, fast-push-handler.ts):
 *
 * - MAX_CONNECTIONS: connections beyond it are closed as they are accepted (net.Server's
 *   maxConnections), before any HTTP/2 state exists for them.
 * - MAX_STREAMS_PER_CONNECTION: advertised as SETTINGS_MAX_CONCURRENT_STREAMS and enforced by
 *   nghttp2. Conforming clients (Node's, Connect's) queue their calls beyond it. A stream beyond it
 *   sent before the client acknowledged the setting is refused with RST_STREAM(REFUSED_STREAM); one
 *   sent after breaks the protocol, and nghttp2 closes the connection with GOAWAY(PROTOCOL_ERROR).
 * - STREAM_IDLE_TIMEOUT_MS: a stream on which the client owes the next move — its request is still
 *   arriving, or the answer waits for it to read (the server's writes held by flow control) — and on
 *   which nothing moved for that long is reset. A stream whose request is complete and on which the
 *   server is the one waiting (the sync barrier, a pull's min_version, NextAssignment's long poll)
 *   is never idle: the server's own bounds (SYNC_TIMEOUT_MS, WAIT_TIMEOUT_MS) end those waits.
 * - CONNECTION_IDLE_TIMEOUT_MS: a connection with no open stream for that long gets GOAWAY(NO_ERROR)
 *   and is closed, including one that never sent the HTTP/2 preface or anything at all (with TLS, a
 *   handshake that does not finish in that time: limitedListenerOptions). A connection with a stream
 *   open, such as a push waiting at the barrier, is never idle.
 *
 * - Session memory: Node refuses every new stream of a connection (RST_STREAM ENHANCE_YOUR_CALM,
 *   which gRPC clients report as RESOURCE_EXHAUSTED) while the session's accounted memory is over
 *   maxSessionMemory — and data queued on a stream that the client then resets stays accounted for
 *   good (a Node.js leak: measured, 3 cancelled pulls of 4 MiB chunks poisoned a connection). The
 *   bound is sized to what the flow-control windows let a client send plus a margin
 *   (SESSION_MEMORY_MB), writes hand Node at most WRITE_SLICE_BYTES at a time (backpressure.ts),
 *   and a connection on which so many answers were reset mid-way that the margin may be used up
 *   gets GOAWAY(NO_ERROR): its open calls finish, its client opens a fresh connection for new ones.
 *
 * Refusals and resets are warned about at most once per REPORT_INTERVAL_MS (a count of the others
 * follows, and each of them is logged at debug level), so an attacker cannot flood the log. An idle
 * connection closing is routine (a worker's between calls): debug level only.
 */
import http2 from "node:http2";
import type { Socket } from "node:net";
import tls from "node:tls";
import type { Logger } from "@distributed-ps/common/log.ts";
import { WRITE_SLICE_BYTES } from "@distributed-ps/common/wire/backpressure.ts";
import { CONNECTION_WINDOW_BYTES } from "@distributed-ps/common/wire/http2-settings.ts";
import type { ServerEnv } from "../config.ts";

/** The margin above the connection window that reset answers may strand (see the session memory rule). */
const STRANDED_MARGIN_BYTES = 32 << 20;
/** http2's maxSessionMemory, in MB: the window, the margin, and room for headers and bookkeeping. */
export const SESSION_MEMORY_MB = (CONNECTION_WINDOW_BYTES + STRANDED_MARGIN_BYTES) / (1 << 20) + 8;
/** What one answer reset mid-way may leave accounted: one write slice and the stream's write buffer. */
const STRANDED_PER_RESET_BYTES = WRITE_SLICE_BYTES + (64 << 10);

export type Limits = Pick<ServerEnv, "MAX_CONNECTIONS" | "MAX_STREAMS_PER_CONNECTION" | "STREAM_IDLE_TIMEOUT_MS" | "CONNECTION_IDLE_TIMEOUT_MS">;

/** How long a peer has, after an idle connection's GOAWAY, to close its side before the socket is destroyed. */
const LINGER_MS = 2_000;

/** A warning about refusals or resets sums up the ones after it for this long. */
const REPORT_INTERVAL_MS = 10_000;

/**
 * The idle reset's RST_STREAM code. gRPC's HTTP/2 mapping turns CANCEL from a server into CANCELLED,
 * for a server that "needs to cancel a call but the payload byte sequence is incomplete" — here the
 * request's bytes, or the answer's, which the client stopped sending or reading. REFUSED_STREAM
 * (UNAVAILABLE) would promise that nothing was processed, and ENHANCE_YOUR_CALM (RESOURCE_EXHAUSTED)
 * reads as rate limiting. Node also destroys a stream it cancels itself without an 'error' event.
 */
const IDLE_RESET_CODE = http2.constants.NGHTTP2_CANCEL;

/** Options for http2.createSecureServer that the limits need (the SETTINGS are common/src/wire/http2-settings.ts's). */
export function limitedListenerOptions(limits: Limits): { handshakeTimeout: number } {
  return {
    // TLS only: a connection that has not finished its handshake is no session yet; tls.Server drops it.
    handshakeTimeout: limits.CONNECTION_IDLE_TIMEOUT_MS,
  };
}

interface Connection {
  readonly session: http2.ServerHttp2Session;
  /** The socket the session runs on (TLS: the TLS socket), to destroy when the session lingers. */
  readonly socket: Socket | undefined;
  /** "address:port" of the peer, for the log. */
  readonly peer: string;
  streams: number;
  /** Answers reset by the client while the server was still writing them. */
  resetAnswers: number;
  idle: NodeJS.Timeout | undefined;
  linger: NodeJS.Timeout | undefined;
}

export class ConnectionLimits {
  readonly #limits: Limits;
  readonly #log: Logger;
  readonly #connections = new Map<http2.Http2Session, Connection>();
  #streams = 0;
  /** The socket whose session is being created (set around Node's own connection listener). */
  #accepting: Socket | undefined;
  readonly #refusals: Throttled;
  readonly #resets: Throttled;

  constructor(server: http2.Http2Server | http2.Http2SecureServer, limits: Limits, log: Logger) {
    this.#limits = limits;
    this.#log = log;
    this.#refusals = new Throttled(log, (n, s) => `refused ${n} more connection(s) in the last ${s} s: MAX_CONNECTIONS (${limits.MAX_CONNECTIONS}) were open`);
    this.#resets = new Throttled(log, (n, s) => `reset ${n} more idle stream(s) in the last ${s} s (STREAM_IDLE_TIMEOUT_MS=${limits.STREAM_IDLE_TIMEOUT_MS})`);

    server.maxConnections = limits.MAX_CONNECTIONS;
    server.on("drop", (d?: { remoteAddress?: string; remotePort?: number }) => {
      const what = () => `refused a connection from ${d?.remoteAddress}:${d?.remotePort}: MAX_CONNECTIONS (${limits.MAX_CONNECTIONS}) are open`;
      if (!this.#refusals.report(what)) log.debug(what());
    });

    // Node creates a connection's session in its own listener of this event and emits "session"
    // from there, synchronously: a listener before it and one after it bracket that session.
    const accepted = server instanceof tls.Server ? "secureConnection" : "connection";
    server.prependListener(accepted, (socket: Socket) => (this.#accepting = socket));
    server.on(accepted, () => (this.#accepting = undefined));
    server.on("session", (session: http2.ServerHttp2Session) => this.#open(session));
    server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => this.#track(stream, String(headers[":path"]).slice(0, 120)));
  }

  /** HTTP/2 connections open now. */
  get connections(): number {
    return this.#connections.size;
  }

  /** Streams open now, on all connections. */
  get streams(): number {
    return this.#streams;
  }

  #open(session: http2.ServerHttp2Session): void {
    const socket = this.#accepting;
    const c: Connection = { session, socket, peer: `${socket?.remoteAddress}:${socket?.remotePort}`, streams: 0, resetAnswers: 0, idle: undefined, linger: undefined };
    this.#connections.set(session, c);
    this.#waitIdle(c);
    session.once("close", () => {
      clearTimeout(c.idle);
      clearTimeout(c.linger);
      this.#connections.delete(session);
    });
  }

  #track(stream: http2.ServerHttp2Stream, path: string): void {
    const c = this.#connections.get(stream.session!);
    this.#streams++;
    if (c !== undefined) {
      c.streams++;
      clearTimeout(c.idle);
      c.idle = undefined;
    }
    stream.once("close", () => {
      this.#streams--;
      if (c !== undefined && stream.headersSent && stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) this.#onAnswerReset(c);
      if (c !== undefined && --c.streams === 0) this.#waitIdle(c);
    });
    // Node restarts this timer whenever the stream receives bytes or completes a write. If it runs
    // out with a write pending, Node gives it another period when the connection (not only this
    // stream) sent anything meanwhile: an unread answer is reset after one to two periods, once its
    // connection is otherwise quiet.
    stream.setTimeout(this.#limits.STREAM_IDLE_TIMEOUT_MS);
    stream.on("timeout", () => this.#onStreamTimeout(stream, path, c));
  }

  #onStreamTimeout(stream: http2.ServerHttp2Stream, path: string, c: Connection | undefined): void {
    if (stream.closed || stream.destroyed) return;
    // Handlers read requests as they arrive, so an incomplete one that did not move is the client's
    // doing; so is an answer that waits in the write buffers for the client's flow-control window.
    const owed = !stream.state.remoteClose ? "sent nothing more of its request" : stream.bufferSize > 0 ? "did not read the answer" : undefined;
    if (owed === undefined) {
      // The request is complete and the server is working on the answer: not the client's turn.
      stream.setTimeout(this.#limits.STREAM_IDLE_TIMEOUT_MS);
      return;
    }
    const what = () => `reset a ${path} stream from ${c?.peer ?? "a client"}: it ${owed} for STREAM_IDLE_TIMEOUT_MS (${this.#limits.STREAM_IDLE_TIMEOUT_MS} ms)`;
    if (!this.#resets.report(what)) this.#log.debug(what());
    stream.close(IDLE_RESET_CODE);
  }

  #onAnswerReset(c: Connection): void {
    if (++c.resetAnswers * STRANDED_PER_RESET_BYTES < STRANDED_MARGIN_BYTES || c.session.closed || c.session.destroyed) return;
    this.#log.info(`retiring the connection from ${c.peer} (GOAWAY; its open calls finish): ${c.resetAnswers} answers reset mid-way may have used up its session memory`);
    c.session.close();
  }

  #waitIdle(c: Connection): void {
    if (c.session.closed || c.session.destroyed) return;
    clearTimeout(c.idle);
    c.idle = setTimeout(() => this.#closeIdle(c), this.#limits.CONNECTION_IDLE_TIMEOUT_MS);
    c.idle.unref();
  }

  #closeIdle(c: Connection): void {
    c.idle = undefined;
    if (c.streams > 0 || c.session.closed || c.session.destroyed) return;
    this.#log.debug(`closing the connection from ${c.peer}: no open stream for CONNECTION_IDLE_TIMEOUT_MS (${this.#limits.CONNECTION_IDLE_TIMEOUT_MS} ms)`);
    // GOAWAY(NO_ERROR); with no stream open, Node ends the socket at once and waits for the peer to
    // end its side, which a peer that does not read may never do.
    c.session.close();
    c.linger = setTimeout(() => (c.socket !== undefined ? c.socket.destroy() : c.session.destroy()), LINGER_MS);
    c.linger.unref();
  }
}

/**
 * A warning that is written at once, after which the same kind of event is only counted for
 * REPORT_INTERVAL_MS and summed up in one line (and so on while they keep coming).
 */
class Throttled {
  readonly #log: Logger;
  readonly #summary: (count: number, seconds: number) => string;
  #window: NodeJS.Timeout | undefined;
  #suppressed = 0;

  constructor(log: Logger, summary: (count: number, seconds: number) => string) {
    this.#log = log;
    this.#summary = summary;
  }

  /** Warns with `message()` unless a warning was written less than REPORT_INTERVAL_MS ago; says whether it did. */
  report(message: () => string): boolean {
    if (this.#window !== undefined) {
      this.#suppressed++;
      return false;
    }
    this.#log.warn(message());
    this.#openWindow();
    return true;
  }

  #openWindow(): void {
    this.#window = setTimeout(() => {
      this.#window = undefined;
      if (this.#suppressed === 0) return;
      this.#log.warn(this.#summary(this.#suppressed, REPORT_INTERVAL_MS / 1000));
      this.#suppressed = 0;
      this.#openWindow();
    }, REPORT_INTERVAL_MS);
    this.#window.unref();
  }
}
