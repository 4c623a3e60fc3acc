/**
 * Connect's gRPC handler, for the two methods whose bodies the server reads or writes by hand (the
 * bulk tensor streams: wire/fast-pull.ts, wire/fast-push-handler.ts). Everything around the body is
 * Connect's own code, so those calls behave like every other: the deadline (grpc-timeout, parsed
 * by Connect), cancellation and server shutdown in one signal (createHandlerContext), the server's
 * interceptors — the list the router gets, so that authentication and logging apply to every RPC
 * by construction — run by Connect's transformInvokeImplementation, the request message of a pull
 * split, checked and parsed by Connect's transforms (the same errors for the same bad bodies), and
 * the status written into the trailers by Connect's setTrailerStatus.
 *
 * What interceptors see of a hand-framed call is what they see of any call — the method, the
 * request headers, the signal, context values, the response headers and trailers, the outcome —
 * except the bulk messages themselves, which are never materialized (that is what these paths
 * are for): a push's request stream is empty, and a pull's response stream yields nothing (its
 * bytes go out through the ResponseWriter).
 */
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescMethodClientStreaming, DescMethodServerStreaming, DescMessage, MessageShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  createHandlerContext,
  createMethodImplSpec,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
} from "@connectrpc/connect";
import { universalRequestFromNodeRequest } from "@connectrpc/connect-node";
import {
  createMethodSerializationLookup,
  pipe,
  transformDecompressEnvelope,
  transformInvokeImplementation,
  transformParseEnvelope,
  transformSplitEnvelope,
} from "@connectrpc/connect/protocol";
import { grpcStatusOk, parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { writeWithBackpressure } from "@distributed-ps/common/wire/backpressure.ts";
import { envelopePrefix } from "@distributed-ps/common/wire/grpc-framing.ts";

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
  /** Writes bytes of the response body (the response headers go first); resolves once the stream takes more. */
  write(bytes: Uint8Array): Promise<void>;
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
  serve(body: Http2ServerRequest, ctx: HandlerContext): Promise<MessageShape<O>>;
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
  return async (req, res) => {
    const done = streamDone(res);
    const releases: (() => void)[] = [];
    const universal = universalRequestFromNodeRequest(req, res, undefined, createContextValues());
    const timeout = parseTimeout(universal.header.get("grpc-timeout"), Number.MAX_SAFE_INTEGER);
    const context = createHandlerContext({
      service: method.parent,
      method,
      protocolName: "grpc",
      requestMethod: "POST",
      url: universal.url,
      timeoutMs: timeout.timeoutMs,
      shutdownSignal: o.shutdownSignal,
      requestSignal: universal.signal,
      requestHeader: universal.header,
      responseHeader: { "content-type": "application/grpc+proto" },
      responseTrailer: { "grpc-status": grpcStatusOk },
      contextValues: universal.contextValues,
    });
    const sendHeaders = () => {
      if (!res.headersSent) res.writeHead(200, nodeHeaders(context.responseHeader));
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
      let spec;
      let input: AsyncIterable<MessageShape<I>>;
      if (method.methodKind === "server_streaming") {
        const serve = (impl as HandFramedServerStream<I, O>).serve;
        spec = createMethodImplSpec(method, (request: MessageShape<I>, ctx: HandlerContext) => serve(request, ctx, out));
        input = pipe(universal.body as AsyncIterable<Uint8Array>, transformSplitEnvelope(o.readMaxBytes), transformDecompressEnvelope(null, o.readMaxBytes), transformParseEnvelope(serialization.getI(true)));
      } else {
        const serve = (impl as HandFramedClientStream<I, O>).serve;
        spec = createMethodImplSpec(method, (_requests: AsyncIterable<MessageShape<I>>, ctx: HandlerContext) => serve(req, ctx));
        input = NO_MESSAGES as AsyncIterable<MessageShape<I>>;
      }
      const serialize = serialization.getO(true).serialize;
      for await (const message of transformInvokeImplementation<I, O>(spec as MethodImplSpec<I, O>, context, o.interceptors)(input)) {
        const bytes = serialize(message as MessageShape<O>);
        await out.write(Buffer.concat([envelopePrefix(bytes.length), bytes]));
      }
    } catch (err) {
      setTrailerStatus(context.responseTrailer, err instanceof ConnectError ? err : new ConnectError("internal error", Code.Internal, undefined, undefined, err));
    }
    // A client that went away hears nothing more.
    if (!res.stream.closed && !res.writableEnded) {
      sendHeaders();
      res.addTrailers(nodeHeaders(context.responseTrailer));
      res.end();
    }
    await done;
    context.abort();
    for (const release of releases) release();
  };
}

/** Resolves when `res` is done with what was written to it: finished, or reset. */
function streamDone(res: Http2ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    res.once("finish", resolve);
    res.once("close", resolve);
  });
}

function nodeHeaders(headers: Headers): Record<string, string> {
  return Object.fromEntries(headers);
}

const NO_MESSAGES: AsyncIterable<never> = { [Symbol.asyncIterator]: () => ({ next: async () => ({ done: true, value: undefined }) }) };
