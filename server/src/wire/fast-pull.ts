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
 * Everything around the body — the request message, deadline, interceptors, status — is Connect's
 * (hand-framed-call.ts). Only plain gRPC (`application/grpc[+proto]`, no compression) takes this
 * path; the Connect and gRPC-Web protocols go to the Connect handler, service.ts, which remains the
 * reference implementation. Wire compatibility is what the integration tests check: they pull
 * through a standard Connect gRPC client and through @grpc/grpc-js.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import {
  Dtype,
  ParameterServerService,
  PullParametersResponseSchema,
  type PullParametersRequest,
  type PullParametersRequestSchema,
} from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { ChunkFramings, envelopePrefix, frameTensorChunks } from "@distributed-ps/common/wire/grpc-framing.ts";
import { EncodedPulls } from "./encoded-pulls.ts";
import type { HandFramedServerStream, ResponseWriter } from "./hand-framed-call.ts";
import { startPull } from "../rpc/service.ts";
import type { TrainingRun } from "../run/training-run.ts";

/** PullParameters for hand-framed-call.ts, answering from `run`. */
export function createFastPull(run: TrainingRun): HandFramedServerStream<typeof PullParametersRequestSchema, typeof PullParametersResponseSchema> {
  const framings = ChunkFramings.messages();
  const encodedPulls = new EncodedPulls(framings);
  return {
    method: ParameterServerService.method.pullParameters,
    async *serve(request: PullParametersRequest, ctx: HandlerContext, out: ResponseWriter) {
      const { snapshot, dtype, chunkBytes } = await startPull(run, request, ctx.signal);
      // The chunks are views of the snapshot, and are being written: released once the stream is
      // done with them, finished or reset.
      out.onDone(() => snapshot.release());
      if (ctx.signal.aborted) throw ctx.signal.reason;
      const header = toBinary(PullParametersResponseSchema, create(PullParametersResponseSchema, {
        message: { case: "header", value: { version: snapshot.version, tensorCount: snapshot.tensors.length } },
      }));
      await out.write(Buffer.concat([envelopePrefix(header.length), header]));
      // float32 chunks are views of the snapshot; 16-bit ones are encoded once per version for every pull.
      const encoded = dtype === Dtype.FLOAT32 ? undefined : encodedPulls.acquire(snapshot, dtype, chunkBytes);
      if (encoded !== undefined) out.onDone(() => encoded.release());
      const chunks = encoded?.chunks ?? snapshot.tensors.flatMap((t) => [...frameTensorChunks(t, dtype, chunkBytes, undefined, framings)]);
      for (const [prefix, data] of chunks) {
        // Between whole messages only: a stream cut inside one would be a protocol error.
        if (ctx.signal.aborted) throw ctx.signal.reason;
        await out.write([prefix, data]);
      }
    },
  };
}
