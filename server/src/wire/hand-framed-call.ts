/**
 * Connect's gRPC handler, for the two methods whose bodies the server reads or writes by hand (the
 * bulk tensor streams: wire/fast-pull.ts, wire/fast-push-handler.ts). Everything around the body
 * is Connect's, so those calls behave like every other: the deadline (grpc-timeout, parsed by
 * Connect), cancellation and server shutdown in one signal of a Connect HandlerContext
 * (call-context.ts); the server's interceptors — the list the router gets, so that authentication
 * and logging apply to every RPC by construction — called with Connect's StreamRequest and
 * StreamResponse as its handlers call them; the request message of a pull checked as Connect's
 * transforms check it and parsed by Connect's serialization (the same errors for the same bad
 * bodies); the status written into the trailers by Connect's setTrailerStatus. Connect's own
 * invoke-implementation.ts and envelope transforms are not used as they are: their (down-compiled)
 * async generators cost a tiny model's call as much again as the rest of its handling.
 *
 * What interceptors see of a hand-framed call is what they see of any call — the method, the
 * request headers, the signal, context values, the response headers and trailers, the outcome —
 * except the bulk messages themselves, which are never materialized (that is what these paths
 * are for): a push's request stream is empty, and a pull's response stream yields nothing (its
 * bytes go out through the ResponseWriter).
 */
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescMethodClientStreaming, DescMethodServerStreaming, DescMessage, MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type Interceptor, type StreamRequest, type StreamResponse } from "@connectrpc/connect";
import { createAsyncIterable, createMethodSerializationLookup } from "@connectrpc/connect/protocol";
import { grpcStatusOk, parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { writeWithBackpressure } from "@distributed-ps/common/wire/backpressure.ts";
import { envelopePrefix } from "@distributed-ps/common/wire/grpc-framing.ts";
import { CallContext } from "./call-context.ts";

/** What the router is given too. */
export interface HandFramedOptions {
  interceptors: Interceptor[];
  /** Ends calls in progress (a push waiting at the barrier) when the server stops. */
  shutdownSignal: AbortSignal;
  /** The largest request message read (Connect's readMaxBytes). */
  readMaxBytes: number;
  writeMaxBytes: number;
}

/** How a hand-framed method sends the bytes of its answer. */
export interface ResponseWriter {
  /** Writes bytes of the response body, in order (the response headers go first); resolves once the stream takes more. */
  write(bytes: Uint8Array | readonly Uint8Array[]): Promise<void>;
  /** Runs `release` once the stream is done with everything written (ended or reset). */
  onDone(release: () => void): void;
}

/** A server-streaming method whose messages the implementation writes itself. */
export interface HandFramedServerStream<I extends DescMessage, O extends DescMessage> {
  method: DescMethodServerStreaming<I, O>;
  serve(request: MessageShape<I>, ctx: HandlerContext, out: ResponseWriter): AsyncIterable<MessageShape<O>>;
}

/** A client-streaming method whose request body the implementation reads itself. */
export interface HandFramedClientStream<I extends DescMessage, O extends DescMessage> {
  method: DescMethodClientStreaming<I, O>;
  serve(body: Http2ServerRequest, ctx: HandlerContext): Promise<HandFramedAnswer<O>>;
}

/**
 * A client stream's answer: the message, and optionally further fields of it already in their
 * wire encoding (protobuf's encoding of a message is the concatenation of its fields' encodings).
 * Interceptors see `message` alone; the bulk fields follow its bytes in the same gRPC message,
 * unless an interceptor answered with a message of its own.
 */
export interface HandFramedAnswer<O extends DescMessage> {
  message: MessageShape<O>;
  bulk?: BulkFields;
}

export interface BulkFields {
  /** The encoded fields, written as they are after the message's own bytes. */
  pieces: readonly Uint8Array[];
  /** Runs once the stream is done with the pieces (written and ended, or reset), or they are not written. */
  release(): void;
}

/** The request path of `method`, as Connect's router routes it. */
export function methodPath(method: { parent: { typeName: string }; name: string }): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** Whether `req` is a plain gRPC call (uncompressed, binary): the calls these handlers answer. */
export function isPlainGrpcCall(req: Http2ServerRequest): boolean {
  if (req.method !== "POST") return false;
  const type = req.headers["content-type"] ?? "";
  const encoding = req.headers["grpc-encoding"];
  return (type === "application/grpc" || type === "application/grpc+proto") && (encoding === undefined || encoding === "identity");
}

/** The node:http2 handler for a hand-framed method. */
export function handFramedHandler<I extends DescMessage, O extends DescMessage>(
  impl: HandFramedServerStream<I, O> | HandFramedClientStream<I, O>,
  o: HandFramedOptions,
): (req: Http2ServerRequest, res: Http2ServerResponse) => Promise<void> {
  const { method } = impl;
  const serialization = createMethodSerializationLookup(method, undefined, undefined, o);
  const parse = serialization.getI(true).parse;
  const serialize = serialization.getO(true).serialize;
  return async (req, res) => {
    const done = streamDone(res);
    const releases: (() => void)[] = [];
    // A client stream's answer, whose bulk fields follow its message (unless an interceptor replaced it).
    let answered: HandFramedAnswer<O> | undefined;
    const grpcTimeout = req.headers["grpc-timeout"];
    const timeout = parseTimeout(typeof grpcTimeout === "string" ? grpcTimeout : null, Number.MAX_SAFE_INTEGER);
    const context = new CallContext(method, req, res, timeout.timeoutMs, o.shutdownSignal);
    const sendHeaders = () => {
      if (!res.headersSent) res.writeHead(200, context.responseHeaders(RESPONSE_HEADERS));
    };
    const out: ResponseWriter = {
      write: async (bytes) => {
        sendHeaders();
        await writeWithBackpressure(res, bytes);
      },
      onDone: (release) => void releases.push(release),
    };
    try {
      if (timeout.error !== undefined) throw timeout.error;
      const input: AsyncIterable<MessageShape<I>> = method.methodKind === "server_streaming" ? requestMessages(req, o.readMaxBytes, parse) : NO_MESSAGES;
      const message: Iterable<MessageShape<O>> | AsyncIterable<MessageShape<O>> =
        o.interceptors.length === 0
          ? await respond(input, context)
          : await intercept<I, O>(o.interceptors, context, input, async (r) => {
              // As Connect's invoke-implementation.ts: the interceptors may have changed the request's headers, signal, values.
              const ctx: HandlerContext = { ...handlerContext(context), requestHeader: r.header, signal: r.signal, values: r.contextValues };
              const messages = await respond(r.message, ctx);
              return Symbol.asyncIterator in messages ? messages : createAsyncIterable([...messages]);
            });
      for await (const m of message) {
        const bytes = serialize(m);
        const bulk = (answered?.message === m ? answered.bulk?.pieces : undefined) ?? [];
        const length = bulk.reduce((n, piece) => n + piece.length, bytes.length);
        await out.write([Buffer.concat([envelopePrefix(length), bytes]), ...bulk]);
      }
    } catch (err) {
      setTrailerStatus(context.responseTrailer, err instanceof ConnectError ? err : new ConnectError("internal error", Code.Internal, undefined, undefined, err));
    }
    // A client that went away hears nothing more.
    if (!res.stream.closed && !res.writableEnded) {
      sendHeaders();
      res.addTrailers(context.responseTrailers(OK_TRAILERS));
      res.end();
    }
    await done;
    context.close();
    for (const release of releases) release();

    /**
     * The implementation's answer to `messages` (the request) in `ctx`, as Connect's
     * invoke-implementation.ts gives it: a server stream's messages as they come; a client
     * stream's one message once the implementation has returned it (so that an interceptor's
     * `next` settles with the call's outcome), as an array: what an async iterable of one message
     * would cost on every push is not worth it unless an interceptor asks for one.
     */
    async function respond(messages: AsyncIterable<MessageShape<I>>, ctx: HandlerContext): Promise<Iterable<MessageShape<O>> | AsyncIterable<MessageShape<O>>> {
      if (impl.method.methodKind === "server_streaming") return afterSingle(messages, (request) => (impl as HandFramedServerStream<I, O>).serve(request, ctx, out));
      answered = await (impl as HandFramedClientStream<I, O>).serve(req, ctx);
      if (answered.bulk !== undefined) out.onDone(answered.bulk.release);
      return [answered.message];
    }
  };
}

/** Resolves when `res` is done with what was written to it: finished, or reset. */
function streamDone(res: Http2ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    res.once("finish", resolve);
    res.once("close", resolve);
  });
}

const RESPONSE_HEADERS = { "content-type": "application/grpc+proto" };
/** A client stream's request messages as its implementation sees them: it reads the body itself. */
const NO_MESSAGES: AsyncIterable<never> = { [Symbol.asyncIterator]: () => ({ next: async () => ({ done: true, value: undefined }) }) };
const OK_TRAILERS = { "grpc-status": grpcStatusOk };

/**
 * The messages of a request body — a pull's one small message — read whole and split as Connect's
 * transforms split them (protocol/async-iterable.ts: transformSplitEnvelope, transformDecompressEnvelope),
 * refusing what they refuse with their codes and words, and parsed by Connect's serialization.
 * Why not the transforms themselves: their chain of async generators cost a pull more than the
 * rest of its handling.
 */
async function* requestMessages<T>(req: Http2ServerRequest, readMaxBytes: number, parse: (bytes: Uint8Array) => T): AsyncGenerator<T> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of req as AsyncIterable<Buffer>) {
    size += part.length;
    // A message may be readMaxBytes, plus its envelope; anything beyond is not one message.
    if (size > readMaxBytes + 5) throw new ConnectError(`message size is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted);
    parts.push(part);
  }
  const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
  for (let at = 0; at < body.length; ) {
    if (body.length - at < 5) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    const length = body.readUInt32BE(at + 1);
    if (length > readMaxBytes) throw new ConnectError(`message size ${length} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted);
    if (body.length - at - 5 < length) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    if ((body[at]! & 0b1) === 1) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
    yield parse(body.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
}

/**
 * The call through `interceptors`, the first one outermost (Connect's applyInterceptors, which the
 * package does not export), as Connect's handlers make it: a StreamRequest of the call, `respond`
 * at the end of the chain, the response's headers and trailers those the call sends.
 */
async function intercept<I extends DescMessage, O extends DescMessage>(
  interceptors: readonly Interceptor[],
  context: CallContext,
  input: AsyncIterable<MessageShape<I>>,
  respond: (r: StreamRequest<I, O>) => Promise<AsyncIterable<MessageShape<O>>>,
): Promise<AsyncIterable<MessageShape<O>>> {
  const { method, service } = context;
  const last = async (r: StreamRequest<I, O>): Promise<StreamResponse<I, O>> => ({
    stream: true,
    service,
    method: method as StreamResponse<I, O>["method"],
    header: context.responseHeader,
    trailer: context.responseTrailer,
    message: await respond(r),
  });
  // Interceptors are typed for any message; this call's are I and O.
  type Next = Parameters<Interceptor>[0];
  const chain = interceptors.reduceRight((next: Next, interceptor) => interceptor(next), last as unknown as Next);
  const request: StreamRequest<I, O> = {
    stream: true,
    service,
    method: method as StreamRequest<I, O>["method"],
    requestMethod: "POST",
    url: context.url,
    signal: context.signal,
    header: context.requestHeader,
    contextValues: context.values,
    message: input,
  };
  const response = (await chain(request as never)) as unknown as StreamResponse<I, O>;
  copyHeaders(response.header, context.responseHeader);
  const trailer = response.trailer;
  return (async function* () {
    yield* response.message;
    copyHeaders(trailer, context.responseTrailer);
  })();
}

/** `context`'s fields as a plain HandlerContext (its Headers made), for a spread. */
function handlerContext(context: CallContext): HandlerContext {
  const { method, service, signal, timeoutMs, requestMethod, requestHeader, responseHeader, responseTrailer, protocolName, values, url } = context;
  return { method, service, signal, timeoutMs, requestMethod, requestHeader, responseHeader, responseTrailer, protocolName, values, url };
}

/**
 * The messages `serve` answers the one request message of a server-streaming call with; none or
 * two are refused as Connect refuses them (invoke-implementation.ts).
 */
async function* afterSingle<T, U>(messages: AsyncIterable<T>, serve: (request: T) => AsyncIterable<U>): AsyncGenerator<U> {
  const it = messages[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true) throw new ConnectError("protocol error: missing input message for server-streaming method", Code.Unimplemented);
  const second = await it.next();
  if (second.done !== true) throw new ConnectError("protocol error: received extra input message for server-streaming method", Code.Unimplemented);
  yield* serve(first.value);
}

/** Connect's copyHeaders (invoke-implementation.ts): what an interceptor put in its own Headers goes out. */
function copyHeaders(from: Headers, to: Headers): void {
  if (from === to) return;
  for (const key of [...to.keys()]) to.delete(key);
  from.forEach((value, key) => to.set(key, value));
}
