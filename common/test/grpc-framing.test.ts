/**
 * The hand-written framing of tensor chunks is protobuf's encoding of the messages: protobuf-es must
 * parse it into exactly the chunks chunkTensors makes, for chunks as messages of their own and as
 * the fields of one message, with framings made afresh and kept from one call to the next.
 */
import t from "tap";
import { fromBinary } from "@bufbuild/protobuf";
import { Dtype, PullParametersResponseSchema, PushGradientsResponseSchema, type TensorChunk } from "../src/gen/paramserver/v1/parameter_server_pb.js";
import type { NamedTensor } from "../src/named-tensor.ts";
import { chunkTensors } from "../src/tensor-stream/chunk-tensors.ts";
import { ChunkFramings, frameTensorChunks, tensorChunkFields } from "../src/wire/grpc-framing.ts";

function tensors(scale = 1, rows = 3): NamedTensor[] {
  return [
    { name: "dense/kernel", shape: [rows, 5], data: Float32Array.from({ length: rows * 5 }, (_, i) => (i - 7) * 0.25 * scale) },
    { name: "scalar", shape: [], data: Float32Array.of(-6.5 * scale) },
    { name: "empty", shape: [0, 4], data: new Float32Array(0) },
    { name: "dense/bias", shape: [7], data: Float32Array.from({ length: 7 }, (_, i) => i * 1.5 * scale) },
  ];
}

/** The chunks in a body of enveloped PullParametersResponse messages, as protobuf-es parses them. */
function parseMessages(pairs: [Uint8Array, Uint8Array][]): TensorChunk[] {
  const body = Buffer.concat(pairs.flat());
  const chunks: TensorChunk[] = [];
  for (let at = 0; at < body.length; ) {
    const length = body.readUInt32BE(at + 1);
    const m = fromBinary(PullParametersResponseSchema, body.subarray(at + 5, at + 5 + length));
    if (m.message.case !== "chunk") throw new Error("expected a chunk");
    chunks.push(m.message.value);
    at += 5 + length;
  }
  return chunks;
}

const plain = (chunks: TensorChunk[]) => chunks.map((c) => ({ name: c.name, shape: c.shape, dtype: c.dtype, byteOffset: c.byteOffset, data: Array.from(c.data) }));

t.test("messages: protobuf-es reads what chunkTensors makes, fresh or with kept framings", async (t) => {
  for (const dtype of [Dtype.FLOAT32, Dtype.FLOAT16, Dtype.BFLOAT16]) {
    for (const chunkBytes of [8, 10, 64, 1 << 20]) {
      const framings = ChunkFramings.messages();
      for (const scale of [1, -2, 3]) {
        const want = plain([...chunkTensors(tensors(scale), dtype, chunkBytes)]);
        t.same(plain(parseMessages(tensors(scale).flatMap((x) => [...frameTensorChunks(x, dtype, chunkBytes)]))), want, `${Dtype[dtype]}, ${chunkBytes}-byte chunks, values x${scale}: fresh`);
        t.same(plain(parseMessages(tensors(scale).flatMap((x) => [...frameTensorChunks(x, dtype, chunkBytes, undefined, framings)]))), want, `${Dtype[dtype]}, ${chunkBytes}-byte chunks, values x${scale}: kept`);
      }
    }
  }
});

t.test("kept framings follow a tensor whose shape changes", async (t) => {
  const framings = ChunkFramings.messages();
  for (const rows of [3, 4, 2, 3]) {
    const got = parseMessages(tensors(1, rows).flatMap((x) => [...frameTensorChunks(x, Dtype.FLOAT32, 16, undefined, framings)]));
    t.same(plain(got), plain([...chunkTensors(tensors(1, rows), Dtype.FLOAT32, 16)]), `${rows} rows`);
  }
  const a = [...frameTensorChunks(tensors()[0]!, Dtype.FLOAT32, 16, undefined, framings)];
  const b = [...frameTensorChunks(tensors(5)[0]!, Dtype.FLOAT32, 16, undefined, framings)];
  t.equal(b[1]![0], a[1]![0], "the same shape again: the very prefix made before");
});

t.test("kept framings hold one chunk size per tensor: other sizes are framed right and replace it", async (t) => {
  // A pull's chunk size comes from its request (max_message_bytes): a client asking for ever other
  // sizes must not make the server keep a framing for each.
  const framings = ChunkFramings.messages();
  const x = tensors()[0]!;
  const first = [...frameTensorChunks(x, Dtype.FLOAT32, 8, undefined, framings)];
  for (const chunkBytes of [16, 24, 8]) {
    t.same(plain(parseMessages([...frameTensorChunks(x, Dtype.FLOAT32, chunkBytes, undefined, framings)])), plain([...chunkTensors([x], Dtype.FLOAT32, chunkBytes)]), `${chunkBytes}-byte chunks`);
  }
  const again = [...frameTensorChunks(x, Dtype.FLOAT32, 8, undefined, framings)];
  t.not(again[0]![0], first[0]![0], "8-byte chunks were framed again: the first framing was not kept beside the others");
  t.equal([...frameTensorChunks(x, Dtype.FLOAT32, 8, undefined, framings)][0]![0], again[0]![0], "the same size twice in a row: kept");
});

t.test("fields: one message with a repeated TensorChunk field", async (t) => {
  const framings = ChunkFramings.fields(PushGradientsResponseSchema.field.parameters.number);
  for (const scale of [1, 2]) {
    const pieces = tensors(scale).flatMap((x) => [...tensorChunkFields(x, framings, Dtype.FLOAT32, Number.MAX_SAFE_INTEGER)].flat());
    const answer = fromBinary(PushGradientsResponseSchema, Buffer.concat(pieces));
    t.same(plain(answer.parameters), plain([...chunkTensors(tensors(scale), Dtype.FLOAT32, Number.MAX_SAFE_INTEGER)]), `values x${scale}`);
  }
  t.throws(() => [...frameTensorChunks(tensors()[0]!, Dtype.FLOAT32, 16, undefined, framings)], /framings are of fields, not messages/, "fields' framings are refused for messages");
});
