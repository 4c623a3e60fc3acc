/**
 * The server's streaming push path (every plain gRPC push): the same updates as the Connect handler
 * from any split of the bytes and any valid encoding of the messages, and the same refusals — bad
 * framing, bad tensors, oversized messages, a wrong token, a client that gives up mid-push — with
 * nothing applied.
 */
import http2 from "node:http2";
import t from "tap";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import {
  Dtype,
  PushGradientsRequestSchema,
  PushGradientsResponseSchema,
  TensorChunkSchema,
  WorkerSessionSchema,
  type WorkerSession,
} from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { envelopePrefix, frameTensorChunks } from "@distributed-ps/common/wire/grpc-framing.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { gradient, startTestServer, values, workersWithParameters } from "../helpers/test-server.ts";
import { waitUntil } from "../helpers/wait.ts";

/** The message in a unary body, without its 5-byte gRPC envelope; throws a description of what is wrong. */
function unwrapEnvelope(body: Buffer): Uint8Array {
  if (body.length < 5) throw new Error("body shorter than a gRPC envelope");
  if (body[0] !== 0) throw new Error("compressed or unknown envelope flags");
  const length = body.readUInt32BE(1);
  if (body.length !== 5 + length) throw new Error(`envelope announces ${length} bytes, body has ${body.length - 5}`);
  return body.subarray(5);
}

const enveloped = (m: Uint8Array) => Buffer.concat([envelopePrefix(m.length), m]);

function headerMessage(session: WorkerSession, baseVersion: number, tensorCount = 2): Buffer {
  return enveloped(toBinary(PushGradientsRequestSchema, create(PushGradientsRequestSchema, { message: { case: "header", value: { session, tensorCount, baseVersion, exampleCount: 1 } } })));
}

function pushBody(session: WorkerSession, baseVersion: number, tensors: NamedTensor[], dtype = Dtype.FLOAT32, chunkBytes = 8): Buffer {
  const parts: Uint8Array[] = [headerMessage(session, baseVersion, tensors.length)];
  for (const x of tensors) for (const [prefix, data] of frameTensorChunks(x, dtype, chunkBytes)) parts.push(prefix, data);
  return Buffer.concat(parts);
}

interface Answer {
  status: string | undefined;
  message: string;
  version: number | undefined;
}

/** Sends `body` as a hand-framed push in writes of `piece` bytes (HTTP/2 frames that split fields and elements). */
async function rawPush(address: string, body: Buffer, o: { piece?: number; token?: string; stopAfter?: number } = {}): Promise<Answer> {
  const session = http2.connect(`http://${address}`);
  session.on("error", () => {});
  try {
    const stream = session.request({
      ":method": "POST",
      ":path": "/paramserver.v1.ParameterServerService/PushGradients",
      "content-type": "application/grpc+proto",
      te: "trailers",
      ...(o.token !== undefined ? { authorization: `Bearer ${o.token}` } : {}),
    });
    stream.on("error", () => {});
    const answer: Answer = { status: undefined, message: "", version: undefined };
    const parts: Buffer[] = [];
    const take = (h: http2.IncomingHttpHeaders) => {
      if (typeof h["grpc-status"] === "string") {
        answer.status = h["grpc-status"];
        answer.message = decodeURIComponent(String(h["grpc-message"] ?? ""));
      }
    };
    stream.on("response", take);
    stream.on("trailers", take);
    stream.on("data", (d: Buffer) => parts.push(d));
    const closed = new Promise<void>((resolve) => stream.once("close", resolve));
    const piece = o.piece ?? body.length;
    const end = o.stopAfter ?? body.length;
    for (let at = 0; at < end && !stream.closed; at += piece) {
      stream.write(body.subarray(at, Math.min(end, at + piece)));
      if (piece < 64) await new Promise((r) => setImmediate(r)); // separate frames
    }
    if (o.stopAfter !== undefined) stream.close(http2.constants.NGHTTP2_CANCEL);
    else stream.end();
    await closed;
    if (answer.status === "0") answer.version = fromBinary(PushGradientsResponseSchema, unwrapEnvelope(Buffer.concat(parts))).version;
    return answer;
  } finally {
    session.close();
  }
}

t.test("pushes split anywhere update the parameters as the generic path does, for every dtype", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", SERVER_MODE: "async", LEARNING_RATE: "1" });
  const [w] = await workersWithParameters(ts, 1);
  let version = 0;
  let expected = [1, 2, 3, 4];
  for (const [dtype, piece] of [[Dtype.FLOAT32, 3], [Dtype.FLOAT16, 5], [Dtype.BFLOAT16, 1], [Dtype.FLOAT32, 1 << 20]] as const) {
    const a = await rawPush(ts.address, pushBody(w!.session, version, gradient(0.5), dtype), { piece });
    t.equal(a.status, "0", `${Dtype[dtype]} in ${piece}-byte writes: accepted (${a.message})`);
    t.equal(a.version, ++version, "applied");
    expected = expected.map((x) => x - 0.5);
    t.same(values((await w!.pull()).tensors).w, expected, "w moved by the gradient");
  }
});

/** Protobuf's encoding, by hand: a field's key, and a varint. */
const varint = (v: number) => {
  const out: number[] = [];
  for (; v >= 0x80; v = Math.floor(v / 128)) out.push((v & 0x7f) | 0x80);
  out.push(v);
  return Buffer.from(out);
};
const lengthField = (field: number, bytes: Uint8Array) => Buffer.concat([varint((field << 3) | 2), varint(bytes.length), bytes]);
const varintField = (field: number, v: number) => Buffer.concat([varint(field << 3), varint(v)]);
/** A PushGradientsRequest whose `chunk` (field 2) is `chunkBody`, enveloped. */
const chunkMessage = (chunkBody: Buffer) => enveloped(lengthField(2, chunkBody));

t.test("any valid encoding of a push is read as protobuf reads it: fields in any order, repeated fields, sparse chunks", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", SERVER_MODE: "async", LEARNING_RATE: "1" });
  const [w] = await workersWithParameters(ts, 1);
  const f32 = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer);
  // Data first, then dtype, the shape unpacked and out of order with the rest, the name last; a
  // name and a data field sent twice (the last one counts, as in any protobuf parser).
  const reversed = Buffer.concat([
    headerMessage(w!.session, 0),
    chunkMessage(Buffer.concat([lengthField(5, f32(9, 9, 9, 9)), lengthField(1, Buffer.from("b")), lengthField(5, f32(1, 1, 1, 1)), varintField(3, Dtype.FLOAT32), varintField(2, 2), lengthField(1, Buffer.from("w")), varintField(2, 2)])),
    chunkMessage(Buffer.concat([lengthField(5, f32(2, 2)), lengthField(2, Buffer.concat([varint(2)])), varintField(3, Dtype.FLOAT32), lengthField(1, Buffer.from("b"))])),
  ]);
  const a = await rawPush(ts.address, reversed, { piece: 3 });
  t.equal(a.status, "0", `fields in reverse order, repeated fields: accepted (${a.message})`);
  t.same(values((await w!.pull()).tensors), { w: [0, 1, 2, 3], b: [-1.5, -2.5] }, "applied with the last value of each repeated field");

  // A top-k push: w sparse (elements 0 and 3), b dense; its fields also out of order.
  const sparse = Buffer.concat([
    headerMessage(w!.session, 1),
    chunkMessage(Buffer.concat([lengthField(8, new Uint8Array(Uint32Array.of(3, 0).buffer)), lengthField(5, f32(0.5, 0.25)), varintField(7, 2), varintField(6, 1), lengthField(1, Buffer.from("w")), lengthField(2, Buffer.concat([varint(2), varint(2)])), varintField(3, Dtype.FLOAT32)])),
    chunkMessage(Buffer.concat([lengthField(1, Buffer.from("b")), lengthField(2, varint(2)), varintField(3, Dtype.FLOAT32), lengthField(5, f32(1, 1))])),
  ]);
  const s = await rawPush(ts.address, sparse, { piece: 5 });
  t.equal(s.status, "0", `a sparse push over plain gRPC: accepted (${s.message})`);
  t.same(values((await w!.pull()).tensors), { w: [-0.25, 1, 2, 2.5], b: [-2.5, -3.5] }, "only the listed elements of w moved");
});

t.test("refusals", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", SERVER_MODE: "async", LEARNING_RATE: "1", MAX_CHUNK_BYTES: "1024" });
  const [w] = await workersWithParameters(ts, 1);
  const s = w!.session;
  const refused = async (body: Buffer, code: Code, pattern: RegExp, what: string, o: { piece?: number; token?: string } = {}) => {
    const a = await rawPush(ts.address, body, o);
    t.equal(a.status, String(code), `${what}: ${Code[code]}`);
    t.match(a.message, pattern, `${what}: ${a.message}`);
  };
  const good = pushBody(s, 0, gradient(1));
  await refused(good.subarray(0, good.length - 3), Code.InvalidArgument, /malformed request message: push ended inside message/, "a truncated body", { piece: 7 });
  const garbage = Buffer.from(good);
  garbage[0] = 0x80;
  await refused(garbage, Code.InvalidArgument, /envelope flags 128/, "garbage envelope flags");
  const chunk = (init: Parameters<typeof create<typeof TensorChunkSchema>>[1]) =>
    enveloped(toBinary(PushGradientsRequestSchema, create(PushGradientsRequestSchema, { message: { case: "chunk", value: create(TensorChunkSchema, init) } })));
  const f32 = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer);
  const b = chunk({ name: "b", shape: [2], dtype: Dtype.FLOAT32, data: f32(1, 1) });
  await refused(
    Buffer.concat([headerMessage(s, 0), chunk({ name: "w", shape: [2, 2], dtype: Dtype.FLOAT32, data: f32(1, 1) }), chunk({ name: "w", byteOffset: 12n, data: f32(1) }), b]),
    Code.InvalidArgument, /chunk at byte 12, expected byte 8/, "out-of-order offsets", { piece: 3 },
  );
  await refused(
    Buffer.concat([headerMessage(s, 0), chunk({ name: "w", shape: [2, 2], dtype: Dtype.FLOAT32, data: f32(1, 1, 1, 1, 1) }), b]),
    Code.InvalidArgument, /20 bytes sent, shape holds 16/, "more bytes than the shape holds", { piece: 5 },
  );
  await refused(
    Buffer.concat([headerMessage(s, 0), chunk({ name: "w", shape: [2, 2], dtype: Dtype.FLOAT32, data: new Uint8Array(14) }), b]),
    Code.InvalidArgument, /not a whole number of 4-byte elements/, "a partial element", { piece: 3 },
  );
  await refused(
    Buffer.concat([headerMessage(s, 0), chunk({ name: "w", shape: [4], dtype: Dtype.FLOAT32, data: f32(1, 1, 1, 1) }), b]),
    Code.InvalidArgument, /has shape \[4\], the parameter has shape \[2,2\]/, "a wrong shape",
  );
  await refused(
    Buffer.concat([headerMessage(s, 0), chunk({ name: "w", shape: [2, 2], dtype: Dtype.FLOAT32, data: f32(1, NaN, 1, 1) }), b]),
    Code.InvalidArgument, /NaN or infinite/, "a NaN", { piece: 2 },
  );
  await refused(Buffer.concat([chunk({ name: "w", shape: [2, 2], dtype: Dtype.FLOAT32, data: f32(1, 1, 1, 1) })]), Code.InvalidArgument, /chunk before the header/, "no header");
  const big = pushBody(s, 0, [{ name: "w", shape: [2, 2], data: new Float32Array(4) }, { name: "b", shape: [70_000], data: new Float32Array(70_000) }], Dtype.FLOAT32, 1 << 20);
  await refused(big, Code.ResourceExhausted, /larger than the limit/, "a message over MAX_CHUNK_BYTES + 64 KiB");
  await refused(pushBody(create(WorkerSessionSchema, { slot: s.slot, token: "forged" }), 0, gradient(1)), Code.FailedPrecondition, /not current/, "a forged session");
  t.same(values((await w!.pull()).tensors).w, [1, 2, 3, 4], "nothing was applied");
  const ok = await rawPush(ts.address, good, { piece: 11 });
  t.equal(ok.status, "0", "a good push after all that is applied");
});

t.test("with AUTH_TOKEN: no token or a wrong one is Unauthenticated", async (t) => {
  const token = "a-token-of-sixteen-chars";
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", AUTH_TOKEN: token });
  const body = pushBody(create(WorkerSessionSchema, { slot: 0, token: "x" }), 0, gradient(1));
  t.equal((await rawPush(ts.address, body)).status, String(Code.Unauthenticated), "no token");
  t.equal((await rawPush(ts.address, body, { token: "wrong-token-of-16-chars" })).status, String(Code.Unauthenticated), "a wrong token");
});

t.test("a client that gives up mid-push leaves nothing behind; the next push goes through", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", SERVER_MODE: "async", LEARNING_RATE: "1" });
  const [w] = await workersWithParameters(ts, 1);
  const body = pushBody(w!.session, 0, gradient(1));
  const a = await rawPush(ts.address, body, { stopAfter: body.length - 10, piece: 9 });
  t.not(a.status, "0", "the cancelled push was not accepted");
  await waitUntil(() => ts.server.limits.streams === 0, "the server let go of the cancelled stream");
  t.same(values((await w!.pull()).tensors).w, [1, 2, 3, 4], "nothing applied");
  t.equal((await rawPush(ts.address, body, { piece: 13 })).status, "0", "the next push is applied");
  t.same(values((await w!.pull()).tensors).w, [0, 1, 2, 3], "once");
});
