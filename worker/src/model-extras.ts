/**
 * What a worker sends with Finish so that the server can export the trained model as model.onnx:
 * its final non-trainable state (batch-norm running statistics, which the server never trains) and
 * the model's inference graph with the weights as named inputs (see ModelExtras in the proto).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ModelExtrasSchema } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { bytesOf } from "@distributed-ps/common/copy-bytes.ts";
import type { Logger } from "@distributed-ps/common/log.ts";
import { MAX_INFERENCE_GRAPH_BYTES } from "@distributed-ps/common/onnx/bind-initializers.ts";
import type { TrainingEngine } from "./model/engine.ts";

/**
 * The extras of `engine`'s model as it is now, or undefined (with a warning saying why: the run still
 * completes, without model.onnx) if they cannot be made or would not fit in one message of
 * `maxMessageBytes` (the server's largest).
 */
export function modelExtras(engine: TrainingEngine, maxMessageBytes: number, log: Logger): MessageInitShape<typeof ModelExtrasSchema> | undefined {
  let graph: Uint8Array;
  try {
    graph = engine.inferenceGraph();
  } catch (err) {
    log.warn(`the model has no ONNX inference graph (${(err as Error).message}): the server will not export model.onnx`);
    return undefined;
  }
  const state = engine.nonTrainableState().map((t) => ({
    name: t.name,
    shape: [...t.shape],
    byteOffset: 0n,
    // float32 little-endian, as every tensor on the wire (the platforms this runs on are little-endian)
    data: bytesOf(t.data),
  }));
  const bytes = graph.length + state.reduce((n, t) => n + t.data.length + t.name.length + 16, 0);
  if (graph.length > MAX_INFERENCE_GRAPH_BYTES || bytes > maxMessageBytes) {
    log.warn(
      `the model's inference graph (${graph.length} bytes, at most ${MAX_INFERENCE_GRAPH_BYTES}) and state (${bytes} bytes in all, at most ${maxMessageBytes} in one message) ` +
        "do not fit: the server will not export model.onnx",
    );
    return undefined;
  }
  return { state, inferenceGraph: graph };
}
