/**
 * PullParameters on the client's connection (fast-channel.ts), its answer decoded as it
 * arrives by PullResponseReader: the tensor bytes go from the socket buffers into the receiving
 * tensors in one copy, instead of through the generic client's envelope concatenation, message
 * parse and second copy. The counterpart of the server's fast pull (server/src/wire/fast-pull.ts).
 *
 * Failures are ConnectErrors with the server's codes (DeadlineExceeded when the deadline passes,
 * Canceled when the caller aborts), as the generic client reports them; a body that is not a valid
 * answer is Internal; tensors that break the stream's rules are TensorStreamErrors, as before.
 */
import http2 from "node:http2";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ParameterServerService, PullParametersRequestSchema, type PullParametersRequest } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { envelopePrefix } from "@distributed-ps/common/wire/grpc-framing.ts";
import type { TensorCollector } from "@distributed-ps/common/tensor-stream/tensor-collector.ts";
import { writeWithBackpressure } from "@distributed-ps/common/wire/backpressure.ts";
import { errorOfStatus, refusedByServer, watchStatus, type FastChannel } from "./fast-channel.ts";
import { FramingError } from "@distributed-ps/common/wire/tensor-message-reader.ts";
import { PullResponseReader } from "./pull-response-reader.ts";

export interface FastPullOptions {
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

/** Pulls into `collector`; returns the answer's version and tensor count (the collector is not finished). */
export function fastPull(
  channel: FastChannel,
  request: MessageInitShape<typeof PullParametersRequestSchema>,
  collector: TensorCollector,
  o: FastPullOptions,
): Promise<{ version: number; tensorCount: number }> {
  return channel.guard("pull", () => pull(channel, create(PullParametersRequestSchema, request), collector, o));
}

async function pull(
  channel: FastChannel,
  request: PullParametersRequest,
  collector: TensorCollector,
  o: FastPullOptions,
): Promise<{ version: number; tensorCount: number }> {
  o.signal?.throwIfAborted();
  const reader = new PullResponseReader(collector, channel.maxMessageBytes);
  const stream = await channel.open(ParameterServerService.method.pullParameters, o.timeoutMs);
  /** Why the client gave up on the stream, if it did: reported instead of the stream's ending. */
  let failure: unknown;
  const stop = (why: unknown) => {
    failure ??= why;
    if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
  };
  const timer = setTimeout(() => stop(new ConnectError(`pull: deadline of ${o.timeoutMs} ms passed`, Code.DeadlineExceeded)), o.timeoutMs);
  const onAbort = () => stop(new ConnectError("pull: aborted", Code.Canceled));
  o.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const status = watchStatus(stream);
    stream.on("data", (bytes: Buffer) => {
      if (failure !== undefined) return;
      try {
        reader.push(bytes);
      } catch (err) {
        stop(err);
      }
    });
    stream.on("error", () => {}); // the close that follows reports it
    const closed = new Promise<void>((resolve) => stream.once("close", resolve));
    const body = toBinary(PullParametersRequestSchema, request);
    await writeWithBackpressure(stream, Buffer.concat([envelopePrefix(body.length), body]));
    stream.end();
    await closed;
    // The server's own error (a refusal, a deadline it saw) explains a broken body best.
    const refusal = refusedByServer(status) ? errorOfStatus("pull", status, "") : undefined;
    if (refusal !== undefined) throw refusal;
    if (failure !== undefined) throw failure instanceof FramingError ? new ConnectError(`malformed pull answer: ${failure.message}`, Code.Internal) : failure;
    const unfinished = errorOfStatus("pull", status, "stream closed without a status (connection lost or deadline passed)");
    if (unfinished !== undefined) throw unfinished;
    try {
      return reader.finish();
    } catch (err) {
      throw err instanceof FramingError ? new ConnectError(`malformed pull answer: ${err.message}`, Code.Internal) : err;
    }
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener("abort", onAbort);
  }
}
