/**
 * PushGradients read as it streams in: through Connect every ~1 MiB chunk was concatenated from its
 * 16 KiB frames into a fresh buffer and parsed before the service decoded it; here the bytes go
 * from the socket buffers into the gradient as they are (common/src/wire/tensor-message-reader.ts,
 * which reads any valid encoding of the messages, sparse chunks included).
 *
 * Everything a push means — the session, admission, the checks on every chunk, the barrier — is
 * the GradientUpload (../run/gradient-upload.ts) that Connect's handler drives too: this handler feeds
 * it the header and each chunk as the body arrives. Everything around the body — deadline,
 * interceptors, status — is Connect's (hand-framed-call.ts). Every plain uncompressed gRPC push
 * takes this path; the Connect and gRPC-Web protocols go to the Connect handler (service.ts).
 */
import type { Http2ServerRequest } from "node:http2";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import {
  Dtype,
  ParameterServerService,
  PushGradientsResponseSchema,
  PushHeaderSchema,
  type PushGradientsRequestSchema,
} from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import type { ChunkFraming } from "@distributed-ps/common/tensor-stream/tensor-assembler.ts";
import { ChunkFramings, tensorChunkFields } from "@distributed-ps/common/wire/grpc-framing.ts";
import { FramingError, MessageTooLargeError, TensorMessageReader, type TensorMessageSink } from "@distributed-ps/common/wire/tensor-message-reader.ts";
import { GradientUpload } from "../run/gradient-upload.ts";
import { asConnectError } from "../rpc/service.ts";
import type { Snapshot } from "../store/parameter-store.ts";
import type { TrainingRun } from "../run/training-run.ts";
import type { BulkFields, HandFramedAnswer, HandFramedClientStream } from "./hand-framed-call.ts";

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

  chunk(framing: ChunkFraming, data: readonly Uint8Array[], dataLength: number): void {
    this.#opened().addPieces(framing, data, dataLength);
  }

  #opened(): GradientUpload {
    // The reader refuses a chunk before the header; this is for a header it could not read.
    if (this.upload === undefined) throw new FramingError("chunk before the header");
    return this.upload;
  }
}

/** PushGradients for hand-framed-call.ts, into `run`; messages over `maxMessageBytes` are refused, as Connect's readMaxBytes does. */
export function createFastPush(run: TrainingRun, maxMessageBytes: number): HandFramedClientStream<typeof PushGradientsRequestSchema, typeof PushGradientsResponseSchema> {
  const parametersField = new ParametersField();
  return {
    method: ParameterServerService.method.pushGradients,
    async serve(req: Http2ServerRequest, ctx: HandlerContext): Promise<HandFramedAnswer<typeof PushGradientsResponseSchema>> {
      const sink = new UploadSink(run);
      try {
        await readBody(req, new TensorMessageReader(sink, maxMessageBytes, "push"), ctx.signal);
        if (sink.upload === undefined) throw new ConnectError("PushGradients: empty stream, expected a header first", Code.InvalidArgument);
        const { response, parameters } = await sink.upload.submit(ctx.signal);
        return { message: response, bulk: parameters === undefined ? undefined : parametersField.of(parameters) };
      } catch (err) {
        sink.upload?.abandon(); // nothing, once submitted: the aggregator owns the gradient then
        req.resume(); // read and drop the rest: the answer says what was wrong
        throw asConnectError(asRequestError(err));
      }
    },
  };
}

/**
 * PushGradientsResponse.parameters (field 4) written from the snapshot's tensors as they are, each
 * one float32 chunk: no copy of the model for the answer. The snapshot stays held until the stream
 * is done with it. The framing of the newest version is kept: every worker of a sync step is
 * answered with the same version.
 */
class ParametersField {
  #newest: { tensors: readonly NamedTensor[]; version: number; pieces: Uint8Array[] } | undefined;
  /** The chunks' framing: the same for every version (async mode answers each push with its own). */
  readonly #framings = ChunkFramings.fields(PushGradientsResponseSchema.field.parameters.number);

  of(snapshot: Snapshot): BulkFields {
    const { tensors, version } = snapshot;
    let newest = this.#newest;
    // The same version in the same buffers: the views are of what this snapshot holds.
    if (newest === undefined || newest.version !== version || newest.tensors !== tensors) {
      newest = { tensors, version, pieces: tensors.flatMap((t) => [...tensorChunkFields(t, this.#framings, Dtype.FLOAT32, Number.MAX_SAFE_INTEGER)].flat()) };
      this.#newest = newest;
    }
    return { pieces: newest.pieces, release: () => snapshot.release() };
  }
}

/**
 * Feeds the body to `reader` as it arrives (the reader decodes it into the upload right away, or
 * holds at most one message's socket buffers for an unusual encoding, so a slow decoder slows the
 * socket down by itself); resolves at its end, rejects with what was wrong, or with `signal`'s reason
 * when the call ends first.
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
