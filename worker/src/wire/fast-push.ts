/**
 * PushGradients written by hand on the worker's side: the counterpart of the server's fast pull.
 * A push is the second-biggest stream (a whole gradient every step), and through the generic
 * client each chunk is copied three to four times (protobuf writer growth, its copy, its final
 * slice, the gRPC envelope) and left as garbage. Here the framing is encoded by hand and the
 * tensor bytes are written as they are (a view for float32, one conversion for fp16/bf16). The
 * answer, with the parameters a small model asks for, is read as it arrives (push-answer-reader.ts).
 *
 * It goes over the client's connection (fast-channel.ts) and reports failures as
 * ConnectErrors with the server's codes, so callers cannot tell the difference. Sparse (top-k)
 * pushes keep using the generic client.
 */
import http2 from "node:http2";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ParameterServerService,
  PushGradientsRequestSchema,
  type Dtype,
  type PushGradientsResponse,
  type PushHeaderSchema,
} from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { envelopePrefix, frameTensorChunks, type ChunkFramings } from "@distributed-ps/common/wire/grpc-framing.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import type { TensorCollector } from "@distributed-ps/common/tensor-stream/tensor-collector.ts";
import { WRITE_SLICE_BYTES, writeWithBackpressure } from "@distributed-ps/common/wire/backpressure.ts";
import { FramingError } from "@distributed-ps/common/wire/tensor-message-reader.ts";
import { errorOfStatus, watchStatus, type FastChannel } from "./fast-channel.ts";
import { PushAnswerReader } from "./push-answer-reader.ts";
import type { WireArena } from "./wire-arena.ts";

export interface FastPushOptions {
  dtype: Dtype;
  chunkBytes: number;
  timeoutMs: number;
  /** Where the parameters an answer carries are decoded (PushHeader.return_parameters). */
  collector: TensorCollector;
  /** Memory for a 16-bit push's wire bytes. */
  arena?: WireArena | undefined;
  /** The chunks' framing, kept from push to push. */
  framings?: ChunkFramings | undefined;
}

/** The server's answer, and the parameters it carried (finished in the collector) if it carried any. */
export interface FastPushResult {
  answer: PushGradientsResponse;
  parameters: NamedTensor[] | undefined;
}

export function fastPush(
  channel: FastChannel,
  header: MessageInitShape<typeof PushHeaderSchema>,
  tensors: readonly NamedTensor[],
  o: FastPushOptions,
): Promise<FastPushResult> {
  return channel.guard("push", () => push(channel, header, tensors, o));
}

async function push(
  channel: FastChannel,
  header: MessageInitShape<typeof PushHeaderSchema>,
  tensors: readonly NamedTensor[],
  { dtype, chunkBytes, timeoutMs, collector, arena, framings }: FastPushOptions,
): Promise<FastPushResult> {
  const stream = await channel.open(ParameterServerService.method.pushGradients, timeoutMs);
  const timer = setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), timeoutMs);
  const wire = arena?.lend();
  try {
    const status = watchStatus(stream);
    const reader = new PushAnswerReader(collector, channel.maxMessageBytes);
    /** Why the answer could not be read, if it could not: reported once the call's status is known. */
    let unreadable: unknown;
    stream.on("data", (bytes: Buffer) => {
      if (unreadable !== undefined) return;
      try {
        reader.push(bytes);
      } catch (err) {
        unreadable = err;
      }
    });
    stream.on("error", () => {});
    const closed = new Promise<void>((resolve) => stream.once("close", resolve));
    const first = toBinary(PushGradientsRequestSchema, create(PushGradientsRequestSchema, { message: { case: "header", value: header } }));
    // A small gradient goes in one write (writeWithBackpressure corks it); a large one a chunk at a time.
    const pieces: Uint8Array[] = [envelopePrefix(first.length), first];
    let bytes = 5 + first.length;
    for (const t of tensors) {
      for (const [prefix, data] of frameTensorChunks(t, dtype, chunkBytes, wire?.bytes, framings)) {
        pieces.push(prefix, data);
        bytes += prefix.length + data.length;
        if (bytes > WRITE_SLICE_BYTES) {
          await writeWithBackpressure(stream, pieces.splice(0));
          bytes = 0;
        }
      }
    }
    if (pieces.length > 0) await writeWithBackpressure(stream, pieces);
    stream.end();
    await closed;
    const failure = errorOfStatus("push", status, "stream closed without a status (connection lost or deadline passed)");
    if (failure !== undefined) throw failure;
    try {
      if (unreadable !== undefined) throw unreadable;
      return reader.finish();
    } catch (err) {
      // Tensors that break the stream's rules stay TensorStreamErrors, as a pull reports them.
      throw err instanceof FramingError ? new ConnectError(`malformed push answer: ${err.message}`, Code.Internal) : err;
    }
  } finally {
    clearTimeout(timer);
    // Bytes still queued on an open stream would be read after the arena is reused: never send them.
    if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
    wire?.release();
  }
}
