/**
 * PushGradients read as it streams in, for workers that frame their pushes by hand
 * (worker/src/fast-push.ts, which says so with DENSE_PUSH_HEADER). Through Connect every ~1 MiB
 * chunk was concatenated from its 16 KiB frames into a fresh buffer and parsed before the service
 * decoded it; here the bytes go from the socket buffers to the service's decoder as they are
 * (push-chunk-splitter.ts), which removed most of the server's garbage.
 *
 * Everything a push means — the session, the barrier, the checks on every chunk — stays in the
 * service: this handler feeds the same pushGradients implementation the Connect router uses, with
 * a HandlerContext of its own, and only replaces the transport around it (token check, deadline,
 * framing, status). Only plain uncompressed gRPC with the header takes this path; everything else
 * goes to the Connect handler.
 */
import { encodeGrpcMessage, requestTimeoutMs } from "./grpc-conventions.ts";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createHandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { bearerTokenCheck } from "@distributed-ps/common/auth.ts";
import {
  ParameterServerService,
  PushGradientsResponseSchema,
  type PushGradientsRequest,
} from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { DENSE_PUSH_HEADER, envelopePrefix } from "@distributed-ps/common/wire/grpc-framing.ts";
import { FramingError, MessageTooLargeError, TensorMessageReader } from "@distributed-ps/common/wire/tensor-message-reader.ts";
import { AsyncQueue } from "../async-queue.ts";
import { PushChunkSplitter } from "./push-chunk-splitter.ts";

export const PUSH_PATH = "/paramserver.v1.ParameterServerService/PushGradients";

/** Messages read ahead of the service before the socket is paused (each a view of a socket buffer). */
const MAX_QUEUED_MESSAGES = 256;

type PushGradients = ServiceImpl<typeof ParameterServerService>["pushGradients"];

/** Whether this request is a hand-framed gRPC push that this handler serves. */
export function isFastPush(req: Http2ServerRequest): boolean {
  if (req.url !== PUSH_PATH || req.method !== "POST" || req.headers[DENSE_PUSH_HEADER] !== "1") return false;
  const type = req.headers["content-type"] ?? "";
  const encoding = req.headers["grpc-encoding"];
  return (type === "application/grpc" || type === "application/grpc+proto") && (encoding === undefined || encoding === "identity");
}

/**
 * The handler, around `pushGradients()` (the service's, looked up per call: the router creates
 * the service). Messages over `maxMessageBytes` are refused, as Connect's readMaxBytes does.
 */
export function createFastPush(
  pushGradients: () => PushGradients,
  o: { authToken: string | undefined; maxMessageBytes: number; shutdownSignal: AbortSignal },
) {
  const checkToken = o.authToken === undefined ? undefined : bearerTokenCheck(o.authToken);

  return async (req: Http2ServerRequest, res: Http2ServerResponse): Promise<void> => {
    const closed = new AbortController();
    res.once("close", () => closed.abort());
    let stopReading = () => {};
    // Ended when the call is over, which also clears its deadline timer (as Connect's handler does).
    let ctx: ReturnType<typeof createHandlerContext> | undefined;
    try {
      checkToken?.(req.headers.authorization);
      ctx = createHandlerContext({
        service: ParameterServerService,
        method: ParameterServerService.method.pushGradients,
        protocolName: "grpc",
        requestMethod: "POST",
        url: req.url,
        timeoutMs: requestTimeoutMs(req),
        shutdownSignal: o.shutdownSignal,
        requestSignal: closed.signal,
        requestHeader: Object.entries(req.headers).filter((e): e is [string, string] => typeof e[1] === "string" && !e[0].startsWith(":")),
      });
      const messages = new AsyncQueue<PushGradientsRequest>(() => {
        if (messages.length < MAX_QUEUED_MESSAGES / 2 && req.isPaused()) req.resume();
      });
      const reader = new TensorMessageReader(new PushChunkSplitter((m) => messages.push(m)), o.maxMessageBytes, "push");
      const fail = (err: unknown) => {
        messages.fail(asRequestError(err));
        req.resume(); // read and drop the rest: the answer says what was wrong
      };
      req.on("data", (bytes: Buffer) => {
        if (messages.closed) return;
        try {
          reader.push(bytes);
        } catch (err) {
          fail(err);
          return;
        }
        if (messages.length >= MAX_QUEUED_MESSAGES) req.pause();
      });
      req.once("end", () => {
        if (messages.closed) return;
        try {
          reader.finish();
          messages.end();
        } catch (err) {
          fail(err);
        }
      });
      // Once the service has answered, whatever the client still sends is dropped.
      stopReading = () => fail(new ConnectError("push already answered", Code.Canceled));
      req.once("aborted", () => fail(new ConnectError("push stream ended abruptly", Code.Canceled)));
      closed.signal.addEventListener("abort", () => fail(new ConnectError("push stream closed", Code.Canceled)));
      const answer = await pushGradients()(messages, ctx);
      if (closed.signal.aborted) return;
      const body = toBinary(PushGradientsResponseSchema, create(PushGradientsResponseSchema, answer));
      res.writeHead(200, { "content-type": "application/grpc+proto" });
      res.write(Buffer.concat([envelopePrefix(body.length), body]));
      res.addTrailers({ "grpc-status": "0" });
      res.end();
    } catch (raw) {
      stopReading();
      if (closed.signal.aborted || res.writableEnded) return;
      const err = ConnectError.from(raw);
      if (!res.headersSent) res.writeHead(200, { "content-type": "application/grpc+proto" });
      res.addTrailers({ "grpc-status": String(err.code), "grpc-message": encodeGrpcMessage(err.rawMessage) });
      res.end();
    } finally {
      ctx?.abort();
    }
  };
}

/** A body that is not a valid push is the client's fault (InvalidArgument), as on the Connect path. */
function asRequestError(err: unknown): unknown {
  if (err instanceof MessageTooLargeError) return new ConnectError(`PushGradients: ${err.message}`, Code.ResourceExhausted);
  if (err instanceof FramingError) return new ConnectError(`malformed request message: ${err.message}`, Code.InvalidArgument);
  return err;
}
