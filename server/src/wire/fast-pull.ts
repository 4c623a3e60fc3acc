/**
 * PullParameters without the generic message pipeline: the biggest stream by far (every worker
 * pulls the whole model every step), answered in the gRPC wire format written by hand.
 *
 * Why: through Connect each 1 MiB chunk is copied four times on its way out (protobuf writer growth,
 * the writer's copy, its final slice, the gRPC envelope), which made garbage collection the largest
 * single cost of a pull. Here a chunk is a small hand-encoded prefix (envelope, field tags,
 * lengths, name, shape) followed by the tensor bytes written straight from the parameter snapshot,
 * which stays alive — copy-on-write — until the stream has been flushed.
 *
 * Only plain gRPC (`application/grpc[+proto]`, no compression) takes this path; the Connect and
 * gRPC-Web protocols, and anything unusual, go to the Connect handler, which remains the reference
 * implementation. Wire compatibility is what the integration tests check: they pull through a
 * standard Connect gRPC client.
 */
import { encodeGrpcMessage, requestTimeoutMs } from "./grpc-conventions.ts";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { bearerTokenCheck } from "@distributed-ps/common/auth.ts";
import { Dtype, PullParametersRequestSchema, PullParametersResponseSchema, type PullParametersRequest } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { writeWithBackpressure } from "@distributed-ps/common/wire/backpressure.ts";
import { envelopePrefix, frameTensorChunks, unwrapEnvelope } from "@distributed-ps/common/wire/grpc-framing.ts";
import { EncodedPulls } from "./encoded-pulls.ts";
import { startPull } from "../service.ts";
import type { TrainingRun } from "../training-run.ts";

export const PULL_PATH = "/paramserver.v1.ParameterServerService/PullParameters";

/** A pull request is a session, a dtype and a version: anything near this size is not one. */
const MAX_REQUEST_BYTES = 64 << 10;

/** Whether this request is plain gRPC that the fast path serves. */
export function isFastPull(req: Http2ServerRequest): boolean {
  if (req.url !== PULL_PATH || req.method !== "POST") return false;
  const type = req.headers["content-type"] ?? "";
  const encoding = req.headers["grpc-encoding"];
  return (type === "application/grpc" || type === "application/grpc+proto") && (encoding === undefined || encoding === "identity");
}

export function createFastPull(run: TrainingRun, authToken: string | undefined) {
  const checkToken = authToken === undefined ? undefined : bearerTokenCheck(authToken);
  const encodedPulls = new EncodedPulls();

  return async (req: Http2ServerRequest, res: Http2ServerResponse): Promise<void> => {
    const abort = new AbortController();
    res.once("close", () => abort.abort());
    let deadline: NodeJS.Timeout | undefined;
    let expired = false;
    try {
      checkToken?.(req.headers.authorization);
      // The call's deadline ends a wait for min_version and a stream in progress, as on Connect's path.
      const timeoutMs = requestTimeoutMs(req);
      if (timeoutMs !== undefined) {
        deadline = setTimeout(() => {
          expired = true;
          abort.abort();
        }, timeoutMs);
      }
      const request = parseRequest(await readBody(req));
      const { snapshot, dtype, chunkBytes } = await startPull(run, request, abort.signal);
      try {
        if (abort.signal.aborted) throw stopped(expired);
        res.writeHead(200, { "content-type": "application/grpc+proto" });
        const header = toBinary(PullParametersResponseSchema, create(PullParametersResponseSchema, {
          message: { case: "header", value: { version: snapshot.version, tensorCount: snapshot.tensors.length } },
        }));
        await writeWithBackpressure(res, Buffer.concat([envelopePrefix(header.length), header]));
        // float32 chunks are views of the snapshot; 16-bit ones are encoded once per version for every pull.
        const encoded = dtype === Dtype.FLOAT32 ? undefined : encodedPulls.acquire(snapshot, dtype, chunkBytes);
        try {
          const chunks = encoded?.chunks ?? snapshot.tensors.flatMap((t) => [...frameTensorChunks(t, dtype, chunkBytes)]);
          for (const [prefix, data] of chunks) {
            // Between whole messages only: a stream cut inside one would be a protocol error.
            if (abort.signal.aborted) throw stopped(expired);
            await writeWithBackpressure(res, prefix);
            await writeWithBackpressure(res, data);
          }
          res.addTrailers({ "grpc-status": "0" });
          // The buffers are being written: release them only once the stream is done with them,
          // finished or reset (a reset stream never finishes, and end()'s callback waits for that).
          await new Promise<void>((resolve) => {
            res.once("close", resolve);
            res.end(() => resolve());
          });
        } finally {
          encoded?.release();
        }
      } finally {
        snapshot.release();
      }
    } catch (raw) {
      // A client that went away hears nothing more; one whose deadline passed hears that.
      if ((abort.signal.aborted && !expired) || res.writableEnded || res.stream.closed) return;
      const err = expired ? stopped(true) : ConnectError.from(raw);
      if (!res.headersSent) res.writeHead(200, { "content-type": "application/grpc+proto" });
      res.addTrailers({ "grpc-status": String(err.code), "grpc-message": encodeGrpcMessage(err.rawMessage) });
      res.end();
    } finally {
      clearTimeout(deadline);
    }
  };
}

/** Why a pull stopped early: its deadline passed, or its client went away. */
function stopped(expired: boolean): ConnectError {
  return expired
    ? new ConnectError("PullParameters: the call's deadline (grpc-timeout) passed", Code.DeadlineExceeded)
    : new ConnectError("PullParameters: the client cancelled", Code.Canceled);
}

/**
 * The request message, refusing a bad body with the code and words Connect's handler uses for it
 * (protocol/envelope.ts, invoke-implementation.ts, serialization.ts), so that a client sees the same
 * error whichever path served its pull.
 */
export function parseRequest(body: Buffer): PullParametersRequest {
  if (body.length === 0) throw new ConnectError("protocol error: missing input message for server_streaming method", Code.Unimplemented);
  if (body.length < 5 || body.length < 5 + body.readUInt32BE(1)) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  if (body.length > 5 + body.readUInt32BE(1)) throw new ConnectError("protocol error: received extra input message for server_streaming method", Code.Unimplemented);
  if ((body[0]! & 0b1) === 1) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
  try {
    return fromBinary(PullParametersRequestSchema, unwrapEnvelope(body));
  } catch (err) {
    throw new ConnectError(`parse binary: ${(err as Error).message}`, Code.Internal);
  }
}

async function readBody(req: Http2ServerRequest): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of req as AsyncIterable<Buffer>) {
    size += part.length;
    if (size > MAX_REQUEST_BYTES) throw new ConnectError(`PullParameters request larger than ${MAX_REQUEST_BYTES} bytes`, Code.ResourceExhausted);
    parts.push(part);
  }
  return Buffer.concat(parts);
}
