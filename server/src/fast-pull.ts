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
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { bearerTokenCheck } from "@distributed-ps/common/auth.ts";
import { bytesPerElement, encodeElements } from "@distributed-ps/common/dtype.ts";
import { PullParametersRequestSchema, PullParametersResponseSchema, type Dtype } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { startPull } from "./service.ts";
import type { TrainingRun } from "./training-run.ts";

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
  const chunkBytes = run.config.MAX_CHUNK_BYTES;

  return async (req: Http2ServerRequest, res: Http2ServerResponse): Promise<void> => {
    const abort = new AbortController();
    res.once("close", () => abort.abort());
    try {
      checkToken?.(req.headers.authorization);
      const body = await readBody(req);
      const request = fromBinary(PullParametersRequestSchema, unwrapEnvelope(body));
      const { snapshot, dtype } = await startPull(run, request, abort.signal);
      try {
        if (abort.signal.aborted) return;
        res.writeHead(200, { "content-type": "application/grpc+proto" });
        const header = toBinary(PullParametersResponseSchema, create(PullParametersResponseSchema, {
          message: { case: "header", value: { version: snapshot.version, tensorCount: snapshot.tensors.length } },
        }));
        await write(res, Buffer.concat([envelopePrefix(header.length), header]));
        for (const t of snapshot.tensors) {
          for (const [prefix, data] of encodeTensor(t, dtype, chunkBytes)) {
            if (abort.signal.aborted) return;
            await write(res, prefix);
            await write(res, data);
          }
        }
        res.addTrailers({ "grpc-status": "0" });
        // The snapshot's buffers are being written: release it only once the stream is done.
        await new Promise<void>((resolve) => res.end(() => resolve()));
      } finally {
        snapshot.release();
      }
    } catch (raw) {
      if (abort.signal.aborted || res.writableEnded) return;
      const err = ConnectError.from(raw);
      if (!res.headersSent) res.writeHead(200, { "content-type": "application/grpc+proto" });
      res.addTrailers({ "grpc-status": String(err.code), "grpc-message": encodeURIComponent(err.rawMessage) });
      res.end();
    }
  };
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

/** The one message of a unary-request stream, without its 5-byte gRPC envelope. */
function unwrapEnvelope(body: Buffer): Uint8Array {
  if (body.length < 5) throw new ConnectError("PullParameters: request body shorter than a gRPC envelope", Code.InvalidArgument);
  if (body[0] !== 0) throw new ConnectError("PullParameters: compressed or unknown envelope flags", Code.InvalidArgument);
  const length = body.readUInt32BE(1);
  if (body.length !== 5 + length) throw new ConnectError(`PullParameters: envelope announces ${length} bytes, body has ${body.length - 5}`, Code.InvalidArgument);
  return body.subarray(5);
}

function envelopePrefix(length: number): Buffer {
  const b = Buffer.alloc(5);
  b.writeUInt32BE(length, 1);
  return b;
}

/** Writes with back-pressure: waits for 'drain' when the stream's buffer is full. */
function write(res: Http2ServerResponse, data: Uint8Array): Promise<void> {
  if (res.destroyed || res.write(data)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.once("drain", done);
    res.once("close", done);
  });
}

/**
 * The chunks of one tensor as [prefix, data] pairs. The prefix holds the gRPC envelope and the
 * protobuf framing of PullParametersResponse{chunk: TensorChunk{name, shape, dtype, byte_offset,
 * data}} up to the data's bytes, which follow as they are (a view for float32).
 */
export function* encodeTensor(t: NamedTensor, dtype: Dtype, chunkBytes: number): Generator<[Buffer, Uint8Array]> {
  const size = bytesPerElement(dtype);
  const perChunk = Math.max(1, Math.floor(chunkBytes / size));
  const name = Buffer.from(t.name, "utf8");
  const n = t.data.length;
  let from = 0;
  do {
    const to = Math.min(n, from + perChunk);
    const data = encodeElements(t.data, from, to, dtype);
    const w = new Writer();
    // TensorChunk, without the data field's payload.
    w.tag(1, 2).varint(name.length).bytes(name); // name
    if (from === 0) {
      const shape = new Writer();
      for (const d of t.shape) shape.varint(d);
      if (t.shape.length > 0) w.tag(2, 2).varint(shape.length).bytes(shape.finish()); // packed shape
      w.tag(3, 0).varint(dtype); // dtype
    }
    if (from > 0) w.tag(4, 0).varint(from * size); // byte_offset
    w.tag(5, 2).varint(data.length); // data, payload follows
    const inner = w.finish();
    const chunkLength = inner.length + data.length;
    const outer = new Writer().tag(2, 2).varint(chunkLength).finish(); // PullParametersResponse.chunk
    const messageLength = outer.length + chunkLength;
    yield [Buffer.concat([envelopePrefix(messageLength), outer, inner]), data];
    from = to;
  } while (from < n);
}

/** Just enough of a protobuf writer for the framing above. */
class Writer {
  readonly #bytes: number[] = [];
  readonly #parts: Uint8Array[] = [];

  get length(): number {
    return this.#parts.reduce((n, p) => n + p.length, 0) + this.#bytes.length;
  }

  tag(field: number, wireType: number): this {
    return this.varint((field << 3) | wireType);
  }

  varint(value: number): this {
    let v = value;
    while (v >= 0x80) {
      this.#bytes.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.#bytes.push(v);
    return this;
  }

  bytes(b: Uint8Array): this {
    this.#flush();
    this.#parts.push(b);
    return this;
  }

  finish(): Buffer {
    this.#flush();
    return Buffer.concat(this.#parts);
  }

  #flush(): void {
    if (this.#bytes.length > 0) this.#parts.push(Uint8Array.from(this.#bytes.splice(0)));
  }
}
