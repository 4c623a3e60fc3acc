/**
 * PushGradients read as it streams in, for workers that frame their pushes by hand
 * (worker/src/wire/fast-push.ts, which says so with DENSE_PUSH_HEADER). Through Connect every ~1 MiB
 * chunk was concatenated from its 16 KiB frames into a fresh buffer and parsed before the service
 * decoded it; here the bytes go from the socket buffers into the gradient as they are.
 *
 * Everything a push means — the session, admission, the checks on every chunk, the barrier — is
 * the GradientUpload (../gradient-upload.ts) that Connect's handler drives too: this handler feeds
 * it the header and each chunk's pieces as the body arrives, and only does the transport around it
 * (token check, deadline, framing, status). Only plain uncompressed gRPC with the header takes this
 * path; everything else goes to the Connect handler.
 */
import { encodeGrpcMessage, requestTimeoutMs } from "./grpc-conventions.ts";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { bearerTokenCheck } from "@distributed-ps/common/auth.ts";
import { PushGradientsResponseSchema, PushHeaderSchema } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import type { ChunkFraming } from "@distributed-ps/common/tensor-stream.ts";
import { DENSE_PUSH_HEADER, envelopePrefix } from "@distributed-ps/common/wire/grpc-framing.ts";
import { FramingError, MessageTooLargeError, TensorMessageReader, type TensorMessageSink } from "@distributed-ps/common/wire/tensor-message-reader.ts";
import { GradientUpload } from "../gradient-upload.ts";
import { asConnectError } from "../service.ts";
import type { TrainingRun } from "../training-run.ts";

export const PUSH_PATH = "/paramserver.v1.ParameterServerService/PushGradients";

/** Whether this request is a hand-framed gRPC push that this handler serves. */
export function isFastPush(req: Http2ServerRequest): boolean {
  if (req.url !== PUSH_PATH || req.method !== "POST" || req.headers[DENSE_PUSH_HEADER] !== "1") return false;
  const type = req.headers["content-type"] ?? "";
  const encoding = req.headers["grpc-encoding"];
  return (type === "application/grpc" || type === "application/grpc+proto") && (encoding === undefined || encoding === "identity");
}

/** What the reader finds in the body, handed to the upload its header opens. */
class UploadSink implements TensorMessageSink {
  readonly #run: TrainingRun;
  upload: GradientUpload | undefined;

  constructor(run: TrainingRun) {
    this.#run = run;
  }

  header(bytes: Uint8Array): void {
    let header;
    try {
      header = fromBinary(PushHeaderSchema, bytes);
    } catch (err) {
      throw new FramingError(`malformed header: ${(err as Error).message}`);
    }
    this.upload = GradientUpload.open(this.#run, header);
  }

  beginChunk(framing: ChunkFraming, dataLength: number): void {
    this.#opened().beginChunk(framing, dataLength);
  }

  writeData(piece: Uint8Array): void {
    this.#opened().writeData(piece);
  }

  endChunk(): void {
    this.#opened().endChunk();
  }

  #opened(): GradientUpload {
    // The reader refuses a chunk before the header; this is for a header it could not read.
    if (this.upload === undefined) throw new FramingError("chunk before the header");
    return this.upload;
  }
}

/**
 * The handler for `run`. Messages over `maxMessageBytes` are refused, as Connect's readMaxBytes does;
 * `shutdownSignal` ends a push waiting at the barrier when the server stops, as it does Connect's calls.
 */
export function createFastPush(run: TrainingRun, o: { authToken: string | undefined; maxMessageBytes: number; shutdownSignal: AbortSignal }) {
  const checkToken = o.authToken === undefined ? undefined : bearerTokenCheck(o.authToken);

  return async (req: Http2ServerRequest, res: Http2ServerResponse): Promise<void> => {
    const closed = new AbortController();
    res.once("close", () => closed.abort(new ConnectError("push stream closed", Code.Canceled)));
    const expired = new AbortController();
    let deadline: NodeJS.Timeout | undefined;
    const sink = new UploadSink(run);
    try {
      checkToken?.(req.headers.authorization);
      const timeoutMs = requestTimeoutMs(req);
      if (timeoutMs !== undefined) {
        deadline = setTimeout(() => expired.abort(new ConnectError("the call's deadline (grpc-timeout) passed", Code.DeadlineExceeded)), timeoutMs);
      }
      const signal = AbortSignal.any([closed.signal, expired.signal, o.shutdownSignal]);
      await readBody(req, new TensorMessageReader(sink, o.maxMessageBytes, "push"), signal);
      if (sink.upload === undefined) throw new ConnectError("PushGradients: empty stream, expected a header first", Code.InvalidArgument);
      const answer = await sink.upload.submit(signal);
      if (closed.signal.aborted) return;
      const body = toBinary(PushGradientsResponseSchema, answer);
      res.writeHead(200, { "content-type": "application/grpc+proto" });
      res.write(Buffer.concat([envelopePrefix(body.length), body]));
      res.addTrailers({ "grpc-status": "0" });
      res.end();
    } catch (raw) {
      sink.upload?.abandon(); // nothing, once submitted: the aggregator owns the gradient then
      req.resume(); // read and drop the rest: the answer says what was wrong
      if (closed.signal.aborted || res.writableEnded) return;
      const err = asConnectError(asRequestError(raw));
      if (!res.headersSent) res.writeHead(200, { "content-type": "application/grpc+proto" });
      res.addTrailers({ "grpc-status": String(err.code), "grpc-message": encodeGrpcMessage(err.rawMessage) });
      res.end();
    } finally {
      clearTimeout(deadline);
    }
  };
}

/**
 * Feeds the body to `reader` as it arrives (the reader decodes it into the upload right away: no
 * message is kept, so a slow decoder slows the socket down by itself); resolves at its end, rejects
 * with what was wrong, or with `signal`'s reason when the call ends first.
 */
function readBody(req: Http2ServerRequest, reader: TensorMessageReader, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const stop = (err: unknown) => {
      req.off("data", onData);
      signal.removeEventListener("abort", onAbort);
      reject(err);
    };
    const onData = (bytes: Buffer) => {
      try {
        reader.push(bytes);
      } catch (err) {
        stop(err);
      }
    };
    const onAbort = () => stop(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    req.on("data", onData);
    req.once("aborted", () => stop(new ConnectError("push stream ended abruptly", Code.Canceled)));
    req.once("end", () => {
      req.off("data", onData);
      signal.removeEventListener("abort", onAbort);
      try {
        reader.finish();
        resolve();
      } catch (err) {
        reject(err);
      }
    });
  });
}

/** A body that is not a valid push is the client's fault (InvalidArgument), as on the Connect path. */
function asRequestError(err: unknown): unknown {
  if (err instanceof MessageTooLargeError) return new ConnectError(`PushGradients: ${err.message}`, Code.ResourceExhausted);
  if (err instanceof FramingError) return new ConnectError(`malformed request message: ${err.message}`, Code.InvalidArgument);
  return err;
}
