/**
 * PushGradients written by hand on the worker's side: the counterpart of the server's fast pull.
 * A push is the second-biggest stream (a whole gradient every step), and through the generic
 * client each chunk is copied three to four times (protobuf writer growth, its copy, its final
 * slice, the gRPC envelope) and left as garbage. Here the framing is encoded by hand and the
 * tensor bytes are written as they are (a view for float32, one conversion for fp16/bf16).
 *
 * It speaks plain gRPC over its own HTTP/2 connection to the same server, with the same
 * authentication and TLS settings, and reports failures as ConnectErrors with the server's codes,
 * so callers cannot tell the difference. Sparse (top-k) pushes keep using the generic client.
 */
import http2 from "node:http2";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { endpointOf, type ConnectOptions, type ParameterServerClient } from "@distributed-ps/common/client.ts";
import {
  PushGradientsRequestSchema,
  PushGradientsResponseSchema,
  type Dtype,
  type PushGradientsResponse,
  type PushHeaderSchema,
} from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { envelopePrefix, frameTensorChunks, unwrapEnvelope } from "@distributed-ps/common/grpc-framing.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";

const PUSH_PATH = "/paramserver.v1.ParameterServerService/PushGradients";

export class FastPushChannel {
  readonly #authority: string;
  readonly #options: ConnectOptions;
  #session: http2.ClientHttp2Session | undefined;
  /** Pushes in flight: the connection keeps the process alive only while there are some. */
  #inFlight = 0;

  constructor(address: string, options: ConnectOptions) {
    this.#authority = `${options.tls ? "https" : "http"}://${address}`;
    this.#options = options;
  }

  /** The HTTP/2 connection, opened on first use and again after it closed. */
  #connect(): http2.ClientHttp2Session {
    const current = this.#session;
    if (current !== undefined && !current.closed && !current.destroyed) return current;
    const session = http2.connect(this.#authority, {
      settings: { initialWindowSize: 16 << 20 },
      ...(this.#options.tls?.ca !== undefined ? { ca: this.#options.tls.ca } : {}),
    });
    session.on("error", () => {}); // reported through the stream that hit it
    session.once("close", () => {
      if (this.#session === session) this.#session = undefined;
    });
    session.unref(); // an idle push connection must not keep the worker alive
    this.#session = session;
    return session;
  }

  async push(
    header: MessageInitShape<typeof PushHeaderSchema>,
    tensors: readonly NamedTensor[],
    dtype: Dtype,
    chunkBytes: number,
    timeoutMs: number,
  ): Promise<PushGradientsResponse> {
    try {
      return await this.#push(header, tensors, dtype, chunkBytes, timeoutMs);
    } catch (err) {
      if (err instanceof ConnectError && err.code !== Code.Unavailable) throw err;
      // The connection is in doubt (server gone, reset, GOAWAY): start the next push on a new one.
      this.#session?.destroy();
      this.#session = undefined;
      throw err instanceof ConnectError ? err : new ConnectError(`push failed: ${(err as Error).message}`, Code.Unavailable);
    }
  }

  async #push(
    header: MessageInitShape<typeof PushHeaderSchema>,
    tensors: readonly NamedTensor[],
    dtype: Dtype,
    chunkBytes: number,
    timeoutMs: number,
  ): Promise<PushGradientsResponse> {
    const session = this.#connect();
    if (this.#inFlight++ === 0) session.ref();
    const stream = session.request({
      ":method": "POST",
      ":path": PUSH_PATH,
      "content-type": "application/grpc+proto",
      te: "trailers",
      "grpc-timeout": `${Math.max(1, Math.ceil(timeoutMs))}m`,
      ...(this.#options.authToken !== undefined ? { authorization: `Bearer ${this.#options.authToken}` } : {}),
    });
    const timer = setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), timeoutMs);
    try {
      const answer = collectAnswer(stream);
      const first = toBinary(PushGradientsRequestSchema, create(PushGradientsRequestSchema, { message: { case: "header", value: header } }));
      await write(stream, Buffer.concat([envelopePrefix(first.length), first]));
      for (const t of tensors) {
        for (const [prefix, data] of frameTensorChunks(t, dtype, chunkBytes)) {
          await write(stream, prefix);
          await write(stream, data);
        }
      }
      stream.end();
      const { status, message, body, closedEarly } = await answer;
      if (status === undefined) {
        throw new ConnectError(closedEarly ? "push stream closed without a status (connection lost or deadline passed)" : "push answer had no grpc-status", Code.Unavailable);
      }
      // gRPC status numbers are Connect's codes.
      if (status !== "0") throw new ConnectError(message, Number(status) as Code);
      try {
        return fromBinary(PushGradientsResponseSchema, unwrapEnvelope(body));
      } catch (err) {
        throw new ConnectError(`malformed push answer: ${(err as Error).message}`, Code.Internal);
      }
    } finally {
      clearTimeout(timer);
      if (--this.#inFlight === 0 && !session.destroyed) session.unref();
    }
  }

  close(): void {
    this.#session?.close();
    this.#session = undefined;
  }
}

interface Answer {
  status: string | undefined;
  message: string;
  body: Buffer;
  closedEarly: boolean;
}

/** The response body and its gRPC status (from the trailers, or the headers of a trailers-only answer). */
function collectAnswer(stream: http2.ClientHttp2Stream): Promise<Answer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let status: string | undefined;
    let message = "";
    const take = (h: http2.IncomingHttpHeaders) => {
      const s = h["grpc-status"];
      if (typeof s === "string") {
        status = s;
        message = decodeURIComponent(String(h["grpc-message"] ?? ""));
      }
    };
    stream.on("response", take);
    stream.on("trailers", take);
    stream.on("data", (d: Buffer) => parts.push(d));
    stream.on("error", () => {});
    stream.once("close", () => resolve({ status, message, body: Buffer.concat(parts), closedEarly: status === undefined }));
  });
}

/** Writes with back-pressure; a stream that closed stops the push (its status says why). */
function write(stream: http2.ClientHttp2Stream, data: Uint8Array): Promise<void> {
  if (stream.destroyed || stream.closed) return Promise.resolve();
  if (stream.write(data)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.once("drain", done);
    stream.once("close", done);
  });
}

const channels = new WeakMap<ParameterServerClient, FastPushChannel>();

/**
 * The push channel to the server `client` talks to — one per client, shared by its registrations —
 * or undefined when the client was not made by connectToServer (tests with in-memory transports).
 */
export function fastPushChannelFor(client: ParameterServerClient): FastPushChannel | undefined {
  let channel = channels.get(client);
  if (channel === undefined) {
    const endpoint = endpointOf(client);
    if (endpoint === undefined) return undefined;
    channel = new FastPushChannel(endpoint.address, endpoint.options);
    channels.set(client, channel);
  }
  return channel;
}
