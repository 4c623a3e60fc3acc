/**
 * The calls the worker frames by hand (pushes in fast-push.ts, pulls in fast-pull.ts): the bulk
 * tensor streams, which the generic Connect client copies several times over. They go over the
 * client's own HTTP/2 connection — Connect's Http2SessionManager, shared with the generated stubs
 * (common/src/wire/client.ts) — with the same address, authentication and TLS, and speak plain gRPC.
 */
import type http2 from "node:http2";
import type { DescMethodStreaming } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type Interceptor, type StreamRequest, type StreamResponse, type UnaryRequest } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
import { codeFromHttpStatus, findTrailerError, grpcStatusOk } from "@connectrpc/connect/protocol-grpc";
import { clientInterceptors, DEFAULT_MAX_MESSAGE_BYTES, endpointOf, sessionManager, type ConnectOptions, type ParameterServerClient } from "@distributed-ps/common/wire/client.ts";
import { TensorStreamError } from "@distributed-ps/common/tensor-stream/tensor-stream-error.ts";
import { widenConnectionWindow } from "@distributed-ps/common/wire/http2-settings.ts";

export class FastChannel {
  readonly options: ConnectOptions;
  /** The largest message an answer may hold, as the generic client allows it. */
  readonly maxMessageBytes: number;
  readonly #sessions: Http2SessionManager;
  /** The client's interceptors (the bearer token), which every call it makes goes through. */
  readonly #interceptors: Interceptor[];
  /** Connections whose connection-level window was widened already. */
  readonly #widened = new WeakSet<http2.ClientHttp2Session>();

  /** On `sessions` (a client's, to share its connection), or on a connection of its own. */
  constructor(address: string, options: ConnectOptions, sessions: Http2SessionManager = sessionManager(address, options)) {
    this.options = options;
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#sessions = sessions;
    this.#interceptors = clientInterceptors(options);
  }

  /**
   * Starts a gRPC call of `method` with a deadline of `timeoutMs`, its request headers set by the
   * client's interceptors as for any other call (they see the call's start: the stream's messages are
   * written and read by the caller). The manager keeps the connection referenced (the process
   * alive) while the call's stream is open.
   */
  async open(method: DescMethodStreaming, timeoutMs: number): Promise<http2.ClientHttp2Stream> {
    const path = `/${method.parent.typeName}/${method.name}`;
    const headers: Record<string, string> = {
      "content-type": "application/grpc+proto",
      te: "trailers",
      "grpc-timeout": `${Math.max(1, Math.ceil(timeoutMs))}m`,
    };
    let stream: http2.ClientHttp2Stream | undefined;
    if (this.#interceptors.length === 0) {
      stream = await this.#sessions.request("POST", path, headers, {});
    } else {
      const start = async (req: UnaryRequest | StreamRequest): Promise<StreamResponse> => {
        stream = await this.#sessions.request("POST", path, Object.fromEntries(req.header), {});
        return { stream: true, service: method.parent, method, header: new Headers(), trailer: new Headers(), message: createAsyncIterable([]) };
      };
      const request: StreamRequest = {
        stream: true,
        service: method.parent,
        method,
        requestMethod: "POST",
        url: `${this.#sessions.authority}${path}`,
        signal: NEVER_ABORTED,
        header: new Headers(headers),
        contextValues: createContextValues(),
        message: createAsyncIterable([]),
      };
      // As Connect applies them (interceptor.ts applyInterceptors): the first in the list is the outermost.
      await this.#interceptors.reduceRight((next: Parameters<Interceptor>[0], interceptor) => interceptor(next), start as Parameters<Interceptor>[0])(request);
    }
    const session = stream!.session as http2.ClientHttp2Session | undefined;
    if (session !== undefined && !this.#widened.has(session)) {
      this.#widened.add(session);
      widenConnectionWindow(session);
    }
    // (No notifyResponseByteRead per chunk: the manager sends no keep-alive PINGs here, which is
    // all it would reset.)
    return stream!;
  }

  /**
   * Runs `call`, reporting a failure that is neither the server's answer nor the worker's refusal
   * of it (server gone, reset, GOAWAY: the manager opens a new connection for the next call) as
   * Unavailable, unless it is a ConnectError already.
   */
  async guard<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (err instanceof TensorStreamError) throw err; // tensors the worker refused: the call was cancelled, the connection is fine
      if (err instanceof ConnectError) throw err;
      throw new ConnectError(`${what} failed: ${(err as Error).message}`, Code.Unavailable, undefined, undefined, err);
    }
  }

  /** Closes the connection (for a channel with a connection of its own). */
  close(): void {
    this.#sessions.abort();
  }
}

/**
 * What a call's response said about how it ended: its headers and trailers, as they arrive. Kept
 * as node:http2 gives them; Connect's reader of a status (findTrailerError) gets them as Headers
 * only when the call did not end with OK, which a small model's worker would otherwise build twice
 * a step.
 */
export class CallStatus {
  /** The HTTP status of the response headers, if they arrived. */
  httpStatus: number | undefined;
  readonly #blocks: http2.IncomingHttpHeaders[] = [];

  take(block: http2.IncomingHttpHeaders): void {
    this.#blocks.push(block);
  }

  /** The grpc-status field, from the headers (a trailers-only answer) or the trailers; undefined if none came. */
  get grpcStatus(): string | undefined {
    let status: string | undefined;
    for (const b of this.#blocks) {
      const v = b["grpc-status"];
      if (v !== undefined) status = Array.isArray(v) ? v.join(", ") : v;
    }
    return status;
  }

  /** Whether the call ended with OK and nothing that could say otherwise (status details). */
  get ok(): boolean {
    return this.grpcStatus === grpcStatusOk && this.#blocks.every((b) => b["grpc-status-details-bin"] === undefined);
  }

  /** Headers and trailers together, as Connect reads a status from them. */
  get fields(): Headers {
    const fields = new Headers();
    for (const b of this.#blocks) {
      for (const [name, value] of Object.entries(b)) {
        if (name.startsWith(":") || value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) fields.append(name, v);
      }
    }
    return fields;
  }
}

/** Watches `stream` for its gRPC status. */
export function watchStatus(stream: http2.ClientHttp2Stream): CallStatus {
  const s = new CallStatus();
  stream.on("response", (h) => {
    s.httpStatus = Number(h[":status"]);
    s.take(h);
  });
  stream.on("trailers", (h) => s.take(h));
  return s;
}

/** Whether the server answered with a status other than OK. */
export function refusedByServer(s: CallStatus): boolean {
  const status = s.grpcStatus;
  return status !== undefined && status !== grpcStatusOk;
}

/**
 * The ConnectError for a call that ended with `s`, undefined for status OK. A gRPC status is parsed
 * by Connect's own reader (message decoding, error details; the error counts as the server's answer,
 * `isWireError`); without one, the call did not get an answer: Unavailable, or the HTTP status's code.
 */
export function errorOfStatus(what: string, s: CallStatus, closedEarlyWhy: string): ConnectError | undefined {
  if (s.ok) return undefined;
  if (s.grpcStatus !== undefined) return findTrailerError(s.fields);
  if (s.httpStatus !== undefined && s.httpStatus !== 200) {
    return new ConnectError(`${what}: HTTP status ${s.httpStatus} without a gRPC status`, codeFromHttpStatus(s.httpStatus));
  }
  return new ConnectError(`${what} ${closedEarlyWhy}`, Code.Unavailable);
}

/** The signal of a call's StreamRequest here: the caller cancels the stream itself. */
const NEVER_ABORTED = new AbortController().signal;

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
    channel = new FastChannel(endpoint.address, endpoint.options, endpoint.sessions);
    channels.set(client, channel);
  }
  return channel;
}
