/**
 * PushGradients written by hand on the worker's side: the counterpart of the server's fast pull.
 * A push is the second-biggest stream (a whole gradient every step), and through the generic
 * client each chunk is copied three to four times (protobuf writer growth, its copy, its final
 * slice, the gRPC envelope) and left as garbage. Here the framing is encoded by hand and the
 * tensor bytes are written as they are (a view for float32, one conversion for fp16/bf16).
 *
 * It goes over the client's connection (fast-channel.ts) and reports failures as
 * ConnectErrors with the server's codes, so callers cannot tell the difference. Sparse (top-k)
 * pushes keep using the generic client.
 */
import http2 from "node:http2";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ParameterServerService,
  PushGradientsRequestSchema,
  PushGradientsResponseSchema,
  type Dtype,
  type PushGradientsResponse,
  type PushHeaderSchema,
} from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { envelopePrefix, frameTensorChunks, unwrapEnvelope } from "@distributed-ps/common/wire/grpc-framing.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { writeWithBackpressure } from "@distributed-ps/common/wire/backpressure.ts";
import { errorOfStatus, watchStatus, type FastChannel } from "./fast-channel.ts";
import type { WireArena } from "./wire-arena.ts";

export function fastPush(
  channel: FastChannel,
  header: MessageInitShape<typeof PushHeaderSchema>,
  tensors: readonly NamedTensor[],
  dtype: Dtype,
  chunkBytes: number,
  timeoutMs: number,
  arena?: WireArena,
): Promise<PushGradientsResponse> {
  return channel.guard("push", () => push(channel, { header, tensors, dtype, chunkBytes, timeoutMs, arena }));
}

async function push(
  channel: FastChannel,
  { header, tensors, dtype, chunkBytes, timeoutMs, arena }: { header: MessageInitShape<typeof PushHeaderSchema>; tensors: readonly NamedTensor[]; dtype: Dtype; chunkBytes: number; timeoutMs: number; arena: WireArena | undefined },
): Promise<PushGradientsResponse> {
  const stream = await channel.open(ParameterServerService.method.pushGradients, timeoutMs);
  const timer = setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), timeoutMs);
  const wire = arena?.lend();
  try {
    const status = watchStatus(stream);
    const parts: Buffer[] = [];
    stream.on("data", (d: Buffer) => parts.push(d));
    stream.on("error", () => {});
    const closed = new Promise<void>((resolve) => stream.once("close", resolve));
    const first = toBinary(PushGradientsRequestSchema, create(PushGradientsRequestSchema, { message: { case: "header", value: header } }));
    await writeWithBackpressure(stream, Buffer.concat([envelopePrefix(first.length), first]));
    for (const t of tensors) {
      for (const [prefix, data] of frameTensorChunks(t, dtype, chunkBytes, wire?.bytes)) {
        await writeWithBackpressure(stream, [prefix, data]);
      }
    }
    stream.end();
    await closed;
    const failure = errorOfStatus("push", status, "stream closed without a status (connection lost or deadline passed)");
    if (failure !== undefined) throw failure;
    try {
      return fromBinary(PushGradientsResponseSchema, unwrapEnvelope(Buffer.concat(parts)));
    } catch (err) {
      throw new ConnectError(`malformed push answer: ${(err as Error).message}`, Code.Internal);
    }
  } finally {
    clearTimeout(timer);
    // Bytes still queued on an open stream would be read after the arena is reused: never send them.
    if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
    wire?.release();
  }
}
