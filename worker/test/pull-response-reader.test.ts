/**
 * The streaming reader of pull answers: it must rebuild exactly what the generic client does from
 * any split of the bytes (elements and field keys cut between socket reads), and refuse every kind
 * of malformed body with an error that says what was wrong.
 */
import t, { type Test } from "tap";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import {
  Dtype,
  PullParametersResponseSchema,
  type TensorChunkSchema,
} from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { envelopePrefix, frameTensorChunks } from "@distributed-ps/common/wire/grpc-framing.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { chunkTensors } from "@distributed-ps/common/tensor-stream/chunk-tensors.ts";
import { TensorCollector } from "@distributed-ps/common/tensor-stream/tensor-collector.ts";
import { TensorStreamError } from "@distributed-ps/common/tensor-stream/tensor-stream-error.ts";
import { FramingError } from "@distributed-ps/common/wire/tensor-message-reader.ts";
import { PullResponseReader } from "../src/wire/pull-response-reader.ts";

function sample(): NamedTensor[] {
  return [
    { name: "conv/w", shape: [3, 5], data: Float32Array.from({ length: 15 }, (_, i) => (i - 7) * 0.25) },
    { name: "scalar", shape: [], data: Float32Array.of(-6.5) },
    { name: "empty", shape: [0, 4], data: new Float32Array(0) },
    { name: "bias", shape: [7], data: Float32Array.from({ length: 7 }, (_, i) => i * 1.5) },
  ];
}

const enveloped = (message: Uint8Array) => Buffer.concat([envelopePrefix(message.length), message]);

function headerMessage(version: number, tensorCount: number): Buffer {
  return enveloped(toBinary(PullParametersResponseSchema, create(PullParametersResponseSchema, { message: { case: "header", value: { version, tensorCount } } })));
}

function chunkMessage(chunk: MessageInitShape<typeof TensorChunkSchema>): Buffer {
  return enveloped(toBinary(PullParametersResponseSchema, create(PullParametersResponseSchema, { message: { case: "chunk", value: chunk } })));
}

/** The answer as the server's fast pull writes it. */
function handFramed(tensors: NamedTensor[], dtype: Dtype, chunkBytes: number, version = 3): Buffer {
  const parts: Uint8Array[] = [headerMessage(version, tensors.length)];
  for (const x of tensors) for (const [prefix, data] of frameTensorChunks(x, dtype, chunkBytes)) parts.push(prefix, data);
  return Buffer.concat(parts);
}

/** The answer as protobuf-es (the Connect handler) encodes it. */
function generic(tensors: NamedTensor[], dtype: Dtype, chunkBytes: number, version = 3): Buffer {
  const parts: Uint8Array[] = [headerMessage(version, tensors.length)];
  for (const c of chunkTensors(tensors, dtype, chunkBytes)) parts.push(chunkMessage(c));
  return Buffer.concat(parts);
}

/** Feeds `body` to a reader in pieces of `piece` bytes, each in a buffer of its own at an odd offset. */
function read(body: Buffer, piece: number, maxMessageBytes = 1 << 20) {
  const collector = new TensorCollector({ maxElements: 1e6, maxTensors: 100 });
  const reader = new PullResponseReader(collector, maxMessageBytes);
  for (let at = 0; at < body.length; at += piece) {
    const part = body.subarray(at, Math.min(body.length, at + piece));
    const own = Buffer.alloc(part.length + 1);
    part.copy(own, 1);
    reader.push(own.subarray(1));
  }
  const { version, tensorCount } = reader.finish();
  return { version, tensors: collector.finish(tensorCount) };
}

function refuses(t: Test, fn: () => unknown, type: new (...a: never[]) => Error, pattern: RegExp, what: string) {
  try {
    fn();
    t.fail(`${what}: nothing was thrown`);
  } catch (err) {
    t.type(err, type, `${what}: ${type.name}`);
    t.match((err as Error).message, pattern, `${what}: ${(err as Error).message}`);
  }
}

const asArrays = (ts: NamedTensor[]) => ts.map((x) => [x.name, x.shape, Array.from(x.data)]);

t.test("rebuilds the tensors from any split of the bytes, for every dtype and both encodings", async (t) => {
  for (const dtype of [Dtype.FLOAT32, Dtype.FLOAT16, Dtype.BFLOAT16]) {
    // What the generic path decodes is the reference (fp16/bf16 round the values).
    const reference = new TensorCollector({ maxElements: 1e6, maxTensors: 100 });
    for (const c of chunkTensors(sample(), dtype, 10)) reference.add(c);
    const want = asArrays(reference.finish(4));
    for (const [encoding, body] of [["hand-framed", handFramed(sample(), dtype, 10)], ["protobuf-es", generic(sample(), dtype, 10)]] as const) {
      for (const piece of [1, 2, 3, 5, 7, 64, body.length]) {
        const got = read(body, piece);
        t.equal(got.version, 3, `${Dtype[dtype]} ${encoding} in ${piece}-byte pieces: version`);
        t.same(asArrays(got.tensors), want, `${Dtype[dtype]} ${encoding} in ${piece}-byte pieces: tensors`);
      }
    }
  }
});

t.test("decodes into the reused buffers of an earlier pull", async (t) => {
  const reuse = new Map<string, Float32Array>();
  const first = new TensorCollector({ maxElements: 1e6, maxTensors: 100, reuse });
  const r1 = new PullResponseReader(first, 1 << 20);
  r1.push(handFramed(sample(), Dtype.FLOAT32, 16));
  const a = first.finish(r1.finish().tensorCount);
  const second = new TensorCollector({ maxElements: 1e6, maxTensors: 100, reuse });
  const r2 = new PullResponseReader(second, 1 << 20);
  r2.push(handFramed(sample(), Dtype.FLOAT32, 16));
  const b = second.finish(r2.finish().tensorCount);
  t.equal(b[0]!.data, a[0]!.data, "the same Float32Array");
});

t.test("skips unknown fields in the response and in its chunks; reads unpacked shapes", async (t) => {
  // Response field 9 (varint) and field 10 (bytes); chunk field 15 (bytes) and 14 (fixed32).
  const unknownTop = Buffer.from([9 << 3, 0x96, 0x01, (10 << 3) | 2, 3, 1, 2, 3]);
  const chunkBody = Buffer.concat([
    Buffer.from([(1 << 3) | 2, 1, 0x78]), // name "x"
    Buffer.from([2 << 3, 2, 2 << 3, 1]), // shape 2, 1 unpacked
    Buffer.from([(15 << 3) | 2, 2, 0xaa, 0xbb, (14 << 3) | 5, 1, 2, 3, 4]),
    Buffer.from([3 << 3, Dtype.FLOAT32]),
    Buffer.from([(5 << 3) | 2, 8]),
    Buffer.from(Float32Array.of(1.5, -2).buffer),
  ]);
  const message = Buffer.concat([unknownTop, Buffer.from([(2 << 3) | 2, chunkBody.length]), chunkBody]);
  const body = Buffer.concat([headerMessage(1, 1), enveloped(message)]);
  for (const piece of [1, 4, body.length]) {
    const got = read(body, piece);
    t.same(asArrays(got.tensors), [["x", [2, 1], [1.5, -2]]], `in ${piece}-byte pieces`);
  }
});

t.test("reads any valid encoding as protobuf-es does: fields after the data, repeated fields, sparse chunks", async (t) => {
  const f32 = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer);
  const key = (field: number, wire: number) => Buffer.from([(field << 3) | wire]);
  const bytesField = (field: number, b: Uint8Array) => Buffer.concat([key(field, 2), Buffer.from([b.length]), b]);
  const varintField = (field: number, v: number) => Buffer.concat([key(field, 0), Buffer.from([v])]);
  const chunkOf = (...fields: Buffer[]) => {
    const body = Buffer.concat(fields);
    return enveloped(Buffer.concat([key(2, 2), Buffer.from([body.length]), body]));
  };
  const bodies: [string, Buffer][] = [
    // data, then name, shape (one packed, one unpacked element), dtype and byte_offset
    ["every field after the data", Buffer.concat([headerMessage(1, 1), chunkOf(bytesField(5, f32(1, 2)), bytesField(1, Buffer.from("x")), bytesField(2, Buffer.from([1])), varintField(2, 2), varintField(3, Dtype.FLOAT32), varintField(4, 0))])],
    // a name and a data field twice: the last value counts
    ["repeated name and data", Buffer.concat([headerMessage(1, 1), chunkOf(bytesField(1, Buffer.from("y")), bytesField(5, f32(7, 7, 7)), varintField(3, Dtype.FLOAT32), bytesField(1, Buffer.from("x")), bytesField(2, Buffer.from([3])), bytesField(5, f32(-1, 0.5, 4)))])],
    // a sparse tensor: two of its four elements, indices before values, the flags last
    ["a sparse chunk", Buffer.concat([headerMessage(1, 1), chunkOf(bytesField(8, new Uint8Array(Uint32Array.of(3, 1).buffer)), bytesField(5, f32(2.5, -1)), bytesField(1, Buffer.from("x")), bytesField(2, Buffer.from([4])), varintField(3, Dtype.FLOAT32), varintField(7, 2), varintField(6, 1))])],
    // the same in field-number order (indices after the data), and with its data last (read as it arrives)
    ["a sparse chunk in field order", Buffer.concat([headerMessage(1, 1), chunkOf(bytesField(1, Buffer.from("x")), bytesField(2, Buffer.from([4])), varintField(3, Dtype.FLOAT32), bytesField(5, f32(2.5, -1)), varintField(6, 1), varintField(7, 2), bytesField(8, new Uint8Array(Uint32Array.of(3, 1).buffer)))])],
    ["a sparse chunk, data last", Buffer.concat([headerMessage(1, 1), chunkOf(bytesField(1, Buffer.from("x")), bytesField(2, Buffer.from([4])), varintField(3, Dtype.FLOAT32), varintField(6, 1), varintField(7, 2), bytesField(8, new Uint8Array(Uint32Array.of(3, 1).buffer)), bytesField(5, f32(2.5, -1)))])],
  ];
  for (const [what, body] of bodies) {
    // The reference: each message parsed whole by protobuf-es, its chunk given to a collector.
    const reference = new TensorCollector({ maxElements: 1e6, maxTensors: 100 });
    for (let at = 0; at < body.length; ) {
      const length = body.readUInt32BE(at + 1);
      const m = fromBinary(PullParametersResponseSchema, body.subarray(at + 5, at + 5 + length));
      if (m.message.case === "chunk") reference.add(m.message.value);
      at += 5 + length;
    }
    const want = asArrays(reference.finish(1));
    for (const piece of [1, 3, body.length]) t.same(asArrays(read(body, piece).tensors), want, `${what}, in ${piece}-byte pieces: ${JSON.stringify(want)}`);
  }
});

t.test("refuses malformed bodies", async (t) => {
  const good = handFramed(sample(), Dtype.FLOAT32, 16);
  refuses(t, () => read(good.subarray(0, good.length - 3), 7), FramingError, /ended inside message/, "a truncated body");
  refuses(t, () => read(good.subarray(0, 3), 7), FramingError, /ended inside message 1/, "a truncated envelope");
  refuses(t, () => read(Buffer.alloc(0), 7), FramingError, /pull answer ended without a header/, "an empty body");
  const compressed = Buffer.from(good);
  compressed[0] = 1;
  refuses(t, () => read(compressed, 7), FramingError, /compressed or unknown envelope flags 1/, "a compressed message");
  refuses(t, () => read(good, 7, 20), FramingError, /larger than the limit of 20/, "a message over the size limit");
  refuses(t, () => read(Buffer.concat([chunkMessage({ name: "x", shape: [1], dtype: Dtype.FLOAT32, data: new Uint8Array(4) })]), 7), FramingError, /chunk before the header/, "a chunk before the header");
  refuses(t, () => read(Buffer.concat([headerMessage(1, 0), headerMessage(2, 0)]), 7), FramingError, /second header/, "two headers");
  // name "x", shape [1], dtype FLOAT32, 4 bytes of data: a valid chunk, twice in one message
  const oneChunk = Buffer.from([(2 << 3) | 2, 14, (1 << 3) | 2, 1, 0x78, (2 << 3) | 2, 1, 1, 3 << 3, 1, (5 << 3) | 2, 4, 0, 0, 0, 0]);
  refuses(t, () => read(Buffer.concat([headerMessage(1, 1), enveloped(Buffer.concat([oneChunk, oneChunk]))]), 3), FramingError, /two chunks in one message/, "a message that repeats its chunk field");
  const overlong = Buffer.from([(2 << 3) | 2, 50, (1 << 3) | 2, 1, 0x78]);
  refuses(t, () => read(Buffer.concat([headerMessage(1, 1), enveloped(overlong)]), 3), FramingError, /runs past its end/, "a chunk longer than its message");
  const badWire = Buffer.from([(2 << 3) | 2, 2, (3 << 3) | 2, 0]);
  refuses(t, () => read(Buffer.concat([headerMessage(1, 1), enveloped(badWire)]), 3), FramingError, /field 3 has wire type 2/, "a dtype with the wrong wire type");
  const badVarint = Buffer.from([(2 << 3) | 2, 12, 4 << 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
  refuses(t, () => read(Buffer.concat([headerMessage(1, 1), enveloped(badVarint)]), 3), FramingError, /varint/, "an overlong varint");
});

t.test("refuses streams that break the tensor rules, as the collector does for whole chunks", async (t) => {
  const x = (byteOffset: number, values: number[], first = byteOffset === 0) =>
    chunkMessage({ name: "x", byteOffset: BigInt(byteOffset), data: new Uint8Array(Float32Array.from(values).buffer), ...(first ? { shape: [4], dtype: Dtype.FLOAT32 } : {}) });
  refuses(t, () => read(Buffer.concat([headerMessage(1, 1), x(0, [1, 2]), x(12, [4])]), 5), TensorStreamError, /chunk at byte 12, expected byte 8/, "out-of-order offsets");
  refuses(t, () => read(Buffer.concat([headerMessage(1, 1), x(0, [1, 2]), x(8, [3, 4, 5])]), 5), TensorStreamError, /20 bytes sent, shape holds 16/, "more bytes than the shape holds");
  refuses(t, () => read(Buffer.concat([headerMessage(1, 1), x(0, [1, 2])]), 5), TensorStreamError, /ended inside tensor "x" after 8 of 16 bytes/, "fewer bytes than the shape holds");
  refuses(t, () => read(Buffer.concat([headerMessage(1, 2), x(0, [1, 2, 3, 4])]), 5), TensorStreamError, /carried 1 tensors, header announced 2/, "fewer tensors than announced");
  refuses(t, () => read(Buffer.concat([headerMessage(1, 1), x(0, [1, NaN, 3, 4])]), 3), TensorStreamError, /1 NaN or infinite/, "a NaN");
  const odd = chunkMessage({ name: "x", shape: [4], dtype: Dtype.FLOAT32, data: new Uint8Array(6) });
  refuses(t, () => read(Buffer.concat([headerMessage(1, 1), odd]), 5), TensorStreamError, /not a whole number of 4-byte elements/, "a partial element");
  const unnamed = chunkMessage({ shape: [1], dtype: Dtype.FLOAT32, data: new Uint8Array(4) });
  refuses(t, () => read(Buffer.concat([headerMessage(1, 1), unnamed]), 5), TensorStreamError, /has no tensor name/, "a chunk without a name");
  const noDtype = chunkMessage({ name: "x", shape: [1], data: new Uint8Array(4) });
  refuses(t, () => read(Buffer.concat([headerMessage(1, 1), noDtype]), 5), TensorStreamError, /unsupported dtype/, "a first chunk without a dtype");
});
