/**
 * The streaming reader of push answers: from any split of the bytes it must give what protobuf-es
 * parses from the whole body — the scalars, and the parameters as the generic path collects them —
 * for the server's own framing and for any other valid encoding, and refuse malformed answers with
 * an error that says what was wrong.
 */
import t from "tap";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Dtype, PushGradientsResponseSchema } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { ChunkFramings, envelopePrefix, tensorChunkFields } from "@distributed-ps/common/wire/grpc-framing.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { chunkTensors } from "@distributed-ps/common/tensor-stream/chunk-tensors.ts";
import { TensorCollector } from "@distributed-ps/common/tensor-stream/tensor-collector.ts";
import { PushAnswerReader } from "../src/wire/push-answer-reader.ts";

function sample(): NamedTensor[] {
  return [
    { name: "dense/w", shape: [3, 5], data: Float32Array.from({ length: 15 }, (_, i) => (i - 7) * 0.25) },
    { name: "scalar", shape: [], data: Float32Array.of(-6.5) },
    { name: "dense/b", shape: [7], data: Float32Array.from({ length: 7 }, (_, i) => i * 1.5) },
  ];
}

const enveloped = (message: Uint8Array) => Buffer.concat([envelopePrefix(message.length), message]);
const SCALARS = { version: 7, staleness: 2, contributors: 4, parametersVersion: 9 };
const PARAMETERS_FIELD = PushGradientsResponseSchema.field.parameters.number;

/** The answer as protobuf-es (Connect's handler) encodes it: fields in number order, parameters among them. */
function generic(answer: MessageInitShape<typeof PushGradientsResponseSchema>): Buffer {
  return enveloped(toBinary(PushGradientsResponseSchema, create(PushGradientsResponseSchema, answer)));
}

/** The answer as the server's fast push writes it: the scalars, then the parameters framed from the snapshot. */
function handFramed(tensors: NamedTensor[]): Buffer {
  const scalars = toBinary(PushGradientsResponseSchema, create(PushGradientsResponseSchema, SCALARS));
  const framings = ChunkFramings.fields(PARAMETERS_FIELD);
  const pieces = tensors.flatMap((x) => [...tensorChunkFields(x, framings, Dtype.FLOAT32, Number.MAX_SAFE_INTEGER)].flat());
  const length = scalars.length + pieces.reduce((n, p) => n + p.length, 0);
  return Buffer.concat([envelopePrefix(length), scalars, ...pieces]);
}

/** Feeds `body` in pieces of `piece` bytes, each in a buffer of its own at an odd offset. */
function read(body: Buffer, piece: number, maxMessageBytes = 1 << 20, reuse?: Map<string, Float32Array>) {
  const reader = new PushAnswerReader(new TensorCollector({ maxElements: 1e6, maxTensors: 100, reuse }), maxMessageBytes);
  for (let at = 0; at < body.length; at += piece) {
    const part = body.subarray(at, Math.min(body.length, at + piece));
    const own = Buffer.alloc(part.length + 1);
    part.copy(own, 1);
    reader.push(own.subarray(1));
  }
  return reader.finish();
}

/** What protobuf-es makes of the whole body, its parameters collected as the generic path does. */
function reference(body: Buffer) {
  const answer = fromBinary(PushGradientsResponseSchema, body.subarray(5));
  const collector = new TensorCollector({ maxElements: 1e6, maxTensors: 100 });
  for (const chunk of answer.parameters) collector.add(chunk);
  return { scalars: scalarsOf(answer), tensors: answer.parameters.length === 0 ? undefined : asArrays(collector.finish(collector.tensors.length)) };
}

const scalarsOf = (a: { version: number; staleness: number; contributors: number; parametersVersion: number }) => ({
  version: a.version,
  staleness: a.staleness,
  contributors: a.contributors,
  parametersVersion: a.parametersVersion,
});
const asArrays = (ts: NamedTensor[]) => ts.map((x) => [x.name, x.shape, Array.from(x.data)]);

t.test("gives what protobuf-es parses, from any split of the bytes, for the server's framing and protobuf-es's", async (t) => {
  const bodies: [string, Buffer][] = [
    ["hand-framed (scalars first)", handFramed(sample())],
    ["protobuf-es (parameters between the scalars)", generic({ ...SCALARS, parameters: [...chunkTensors(sample(), Dtype.FLOAT32, Number.MAX_SAFE_INTEGER)] })],
    ["no parameters", generic({ version: 3, contributors: 1 })],
    ["an empty answer (every field at its default)", generic({})],
  ];
  for (const [what, body] of bodies) {
    const want = reference(body);
    for (const piece of [1, 2, 3, 7, 64, body.length]) {
      const got = read(body, piece);
      t.same(scalarsOf(got.answer), want.scalars, `${what}, ${piece}-byte pieces: the scalars`);
      t.same(got.parameters === undefined ? undefined : asArrays(got.parameters), want.tensors, `${what}, ${piece}-byte pieces: the parameters`);
      t.equal(got.answer.parameters.length, 0, `${what}, ${piece}-byte pieces: the answer does not hold them twice`);
    }
  }
  t.equal(reference(handFramed(sample())).tensors?.length, 3, "(the reference itself sees the three tensors)");
});

t.test("decodes into the buffers it is given (the worker's pull buffers)", async (t) => {
  const reuse = new Map<string, Float32Array>();
  const a = read(handFramed(sample()), 64, 1 << 20, reuse).parameters!;
  const b = read(handFramed(sample()), 64, 1 << 20, reuse).parameters!;
  t.equal(b[0]!.data, a[0]!.data, "the same Float32Array");
  t.equal(reuse.get("dense/w"), a[0]!.data, "the one in the map");
});

t.test("skips unknown fields, and reads scalars sent more than once as protobuf does (the last)", async (t) => {
  const scalars = toBinary(PushGradientsResponseSchema, create(PushGradientsResponseSchema, { version: 1 }));
  const extra = Buffer.from([9 << 3, 0x96, 0x01, (10 << 3) | 2, 3, 1, 2, 3, (11 << 3) | 5, 1, 2, 3, 4, (1 << 3) | 0, 0xac, 0x02]);
  const body = enveloped(Buffer.concat([scalars, extra]));
  for (const piece of [1, 5, body.length]) {
    t.same(scalarsOf(read(body, piece).answer), reference(body).scalars, `in ${piece}-byte pieces: version 300`);
  }
  t.equal(read(body, 1).answer.version, 300, "(300, the second value)");
});

t.test("refuses malformed answers", async (t) => {
  const good = handFramed(sample());
  t.throws(() => read(Buffer.alloc(0), 7), { name: "FramingError", message: /push answer ended without a message/ }, "an empty body");
  t.throws(() => read(good.subarray(0, good.length - 3), 7), { name: "FramingError", message: /ended inside message 1/ }, "a truncated answer");
  t.throws(() => read(Buffer.concat([good, good.subarray(0, 2)]), 7), { name: "FramingError", message: /ended inside message 2/ }, "bytes after the answer");
  t.throws(() => read(good, 7, 40), { name: "MessageTooLargeError", message: /larger than the limit of 40/ }, "an answer over the size limit");
  const badWire = enveloped(Buffer.from([(PARAMETERS_FIELD << 3) | 0, 1]));
  t.throws(() => read(badWire, 3), { name: "FramingError", message: /field 4 has wire type 0/ }, "parameters with the wrong wire type");
});

t.test("refuses parameters that break the tensor rules, as the collector does", async (t) => {
  const x = (values: number[]) => ({ name: "x", shape: [4], dtype: Dtype.FLOAT32, data: new Uint8Array(Float32Array.from(values).buffer) });
  t.throws(() => read(generic({ parameters: [x([1, 2])] }), 5), { name: "TensorStreamError", message: /ended inside tensor "x" after 8 of 16 bytes/ }, "fewer bytes than the shape holds");
  t.throws(() => read(generic({ parameters: [x([1, NaN, 3, 4])] }), 3), { name: "TensorStreamError", message: /1 NaN or infinite/ }, "a NaN");
  t.throws(() => read(generic({ parameters: [x([1, 2, 3, 4]), x([1, 2, 3, 4])] }), 3), { name: "TensorStreamError", message: /x/ }, "a tensor sent twice");
});
