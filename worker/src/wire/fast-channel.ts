/**
 * The worker's own HTTP/2 connection to a server, for the calls it frames by hand (pushes in
 * fast-push.ts, pulls in fast-pull.ts): the bulk tensor streams, which the generic Connect client
 * copies several times over. It uses the same address, authentication and TLS settings as the
 * client it belongs to, and speaks plain gRPC.
 */
import http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeFromHttpStatus, findTrailerError, grpcStatusOk } from "@connectrpc/connect/protocol-grpc";
import { endpointOf, type ConnectOptions, type ParameterServerClient } from "@distributed-ps/common/wire/client.ts";
import { TensorStreamError } from "@distributed-ps/common/tensor-stream.ts";
import { HTTP2_SETTINGS, widenConnectionWindow } from "@distributed-ps/common/wire/http2-settings.ts";


export class FastChannel {
  readonly #authority: string;
  readonly options: ConnectOptions;
  #session: http2.ClientHttp2Session | undefined;
  /** Calls in flight: the connection keeps the process alive only while there are some. */
  #inFlight = 0;

  constructor(address: string, options: ConnectOptions) {
    this.#authority = `${options.tls ? "https" : "http"}://${address}`;
    this.options = options;
  }

  /** The HTTP/2 connection, opened on first use and again after it closed. */
  #connect(): http2.ClientHttp2Session {
    const current = this.#session;
    if (current !== undefined && !current.closed && !current.destroyed) return current;
    const session = http2.connect(this.#authority, {
      settings: HTTP2_SETTINGS,
      ...(this.options.tls?.ca !== undefined ? { ca: this.options.tls.ca } : {}),
    });
    session.on("error", () => {}); // reported through the stream that hit it
    widenConnectionWindow(session);
    session.once("close", () => {
      if (this.#session === session) this.#session = undefined;
    });
    session.unref(); // an idle connection must not keep the worker alive
    this.#session = session;
    return session;
  }

  /**
   * Starts a gRPC call to `path` with the token, a deadline of `timeoutMs` and `extraHeaders`; `end()` must be called
   * once the call is over (it lets an idle connection stop keeping the process alive).
   */
  open(path: string, timeoutMs: number, extraHeaders: Record<string, string> = {}): { stream: http2.ClientHttp2Stream; end: () => void } {
    const session = this.#connect();
    if (this.#inFlight++ === 0) session.ref();
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      if (--this.#inFlight === 0 && !session.destroyed) session.unref();
    };
    try {
      const stream = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc+proto",
        te: "trailers",
        "grpc-timeout": `${Math.max(1, Math.ceil(timeoutMs))}m`,
        ...(this.options.authToken !== undefined ? { authorization: `Bearer ${this.options.authToken}` } : {}),
        ...extraHeaders,
      });
      return { stream, end };
    } catch (err) {
      end();
      throw err;
    }
  }

  /**
   * Runs `call`; when it fails for a reason other than the server's answer or the worker's refusal
   * of it, the connection is in doubt (server gone, reset, GOAWAY), so the next call starts on a new
   * one. Those failures, unless they are ConnectErrors already, are reported as Unavailable.
   */
  async guard<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (err instanceof TensorStreamError) throw err; // tensors the worker refused: the call was cancelled, the connection is fine
      if (err instanceof ConnectError && err.code !== Code.Unavailable) throw err;
      this.#session?.destroy();
      this.#session = undefined;
      throw err instanceof ConnectError ? err : new ConnectError(`${what} failed: ${(err as Error).message}`, Code.Unavailable, undefined, undefined, err);
    }
  }

  close(): void {
    this.#session?.close();
    this.#session = undefined;
  }
}

/** What a call's response said about how it ended: its headers and trailers, as they arrive. */
export interface CallStatus {
  /** Headers and trailers together (a trailers-only answer carries the status in its headers). */
  readonly fields: Headers;
  /** The HTTP status of the response headers, if they arrived. */
  httpStatus: number | undefined;
}

/** Watches `stream` for its gRPC status. */
export function watchStatus(stream: http2.ClientHttp2Stream): CallStatus {
  const s: CallStatus = { fields: new Headers(), httpStatus: undefined };
  const take = (h: http2.IncomingHttpHeaders) => {
    for (const [name, value] of Object.entries(h)) {
      if (name.startsWith(":") || value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) s.fields.append(name, v);
    }
  };
  stream.on("response", (h) => {
    s.httpStatus = Number(h[":status"]);
    take(h);
  });
  stream.on("trailers", take);
  return s;
}

/** Whether the server answered with a status other than OK. */
export function refusedByServer(s: CallStatus): boolean {
  const status = s.fields.get("grpc-status");
  return status !== null && status !== grpcStatusOk;
}

/**
 * The ConnectError for a call that ended with `s`, undefined for status OK. A gRPC status is parsed
 * by Connect's own reader (message decoding, error details; the error counts as the server's answer,
 * `isWireError`); without one, the call did not get an answer: Unavailable, or the HTTP status's code.
 */
export function errorOfStatus(what: string, s: CallStatus, closedEarlyWhy: string): ConnectError | undefined {
  if (s.fields.has("grpc-status")) return findTrailerError(s.fields);
  if (s.httpStatus !== undefined && s.httpStatus !== 200) {
    return new ConnectError(`${what}: HTTP status ${s.httpStatus} without a gRPC status`, codeFromHttpStatus(s.httpStatus));
  }
  return new ConnectError(`${what} ${closedEarlyWhy}`, Code.Unavailable);
}

const channels = new WeakMap<ParameterServerClient, FastChannel>();

/**
 * The hand-framed channel to the server `client` talks to — one per client, shared by its
 * registrations — or undefined when the client was not made by connectToServer (tests with
 * in-memory transports), which then does everything itself.
 */
export function fastChannelFor(client: ParameterServerClient): FastChannel | undefined {
  let channel = channels.get(client);
  if (channel === undefined) {
    const endpoint = endpointOf(client);
    if (endpoint === undefined) return undefined;
    channel = new FastChannel(endpoint.address, endpoint.options);
    channels.set(client, channel);
  }
  return channel;
}
