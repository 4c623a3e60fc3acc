/**
 * The worker's hand-framed push reads its answer as it arrives: against a scripted HTTP/2 server,
 * the answer's fields and the parameters it carries, and every way the answer can fail — each
 * reported with the code the generic client would give, the server's own status first.
 */
import http2 from "node:http2";
import t from "tap";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { Dtype, PushGradientsResponseSchema } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { chunkTensors } from "@distributed-ps/common/tensor-stream/chunk-tensors.ts";
import { TensorCollector } from "@distributed-ps/common/tensor-stream/tensor-collector.ts";
import { TensorStreamError } from "@distributed-ps/common/tensor-stream/tensor-stream-error.ts";
import { envelopePrefix } from "@distributed-ps/common/wire/grpc-framing.ts";
import { fastPush } from "../../worker/src/wire/fast-push.ts";
import type { FastChannel } from "../../worker/src/wire/fast-channel.ts";
import { answerWith, scripted } from "../helpers/scripted-server.ts";

const gradient = [{ name: "x", shape: [3], data: Float32Array.of(0.5, -1, 2) }];
const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as Error);

/** A PushGradientsResponse carrying `parameters` (as a float32 tensor "x") when given. */
function answer(parameters?: number[]): Buffer {
  const chunks = parameters === undefined ? [] : [...chunkTensors([{ name: "x", shape: [parameters.length], data: Float32Array.from(parameters) }], Dtype.FLOAT32, 1 << 20)];
  const m = toBinary(PushGradientsResponseSchema, create(PushGradientsResponseSchema, { version: 5, staleness: 1, contributors: 2, parameters: chunks, parametersVersion: parameters === undefined ? 0 : 5 }));
  return Buffer.concat([envelopePrefix(m.length), m]);
}

function push(channel: FastChannel) {
  const collector = new TensorCollector({ maxElements: 1e6, maxTensors: 100 });
  return fastPush(channel, { session: { slot: 0, token: "s" }, tensorCount: 1, returnParameters: true }, gradient, { dtype: Dtype.FLOAT32, chunkBytes: 1 << 20, timeoutMs: 5000, collector });
}

t.test("an answer with parameters: its fields, and the tensors decoded as they arrived", async (t) => {
  let received = 0;
  const channel = await scripted(t, (stream) => {
    stream.on("data", (d: Buffer) => (received += d.length));
    stream.on("end", () => answerWith(stream, answer([1, 2, 3])));
  });
  const r = await push(channel);
  t.same([r.answer.version, r.answer.staleness, r.answer.contributors, r.answer.parametersVersion], [5, 1, 2, 5], "the answer's fields");
  t.equal(r.answer.parameters.length, 0, "its parameters are not kept twice in the message");
  t.same(r.parameters?.map((x) => [x.name, Array.from(x.data)]), [["x", [1, 2, 3]]], "the parameters");
  t.ok(received > 12, `the gradient was sent (${received} bytes)`);
});

t.test("an answer without parameters", async (t) => {
  const channel = await scripted(t, (stream) => stream.on("end", () => answerWith(stream, answer())));
  const r = await push(channel);
  t.equal(r.answer.version, 5, "the answer");
  t.equal(r.parameters, undefined, "no parameters");
});

t.test("a truncated answer with status 0 is a malformed answer (Internal)", async (t) => {
  const channel = await scripted(t, (stream) => {
    const b = answer([1, 2, 3]);
    stream.on("end", () => answerWith(stream, b.subarray(0, b.length - 2)));
  });
  const err = await failure(push(channel));
  t.equal(ConnectError.from(err).code, Code.Internal, "Internal");
  t.match(err?.message ?? "", /malformed push answer: push answer ended inside message 1/, String(err?.message));
});

t.test("garbage with status 0 is a malformed answer too, once the call has ended", async (t) => {
  const channel = await scripted(t, (stream) => stream.on("end", () => answerWith(stream, Buffer.from([0x80, 0, 0, 0, 1, 0]))));
  const err = await failure(push(channel));
  t.equal(ConnectError.from(err).code, Code.Internal, "Internal");
  t.match(err?.message ?? "", /malformed push answer: .*envelope flags 128/, String(err?.message));
});

t.test("parameters that break the tensor rules are a TensorStreamError", async (t) => {
  const channel = await scripted(t, (stream) => stream.on("end", () => answerWith(stream, answer([1, NaN, 3]))));
  const err = await failure(push(channel));
  t.type(err, TensorStreamError, "TensorStreamError");
  t.match(err?.message ?? "", /NaN or infinite/, String(err?.message));
});

t.test("the server's status wins over the broken body it leaves", async (t) => {
  const channel = await scripted(t, (stream) => {
    const b = answer([1, 2, 3]);
    stream.on("end", () => answerWith(stream, b.subarray(0, 9), { "grpc-status": String(Code.FailedPrecondition), "grpc-message": "session not current" }));
  });
  const err = await failure(push(channel));
  t.equal(ConnectError.from(err).code, Code.FailedPrecondition, "the server's code");
  t.match(err?.message ?? "", /session not current/, "and its message");
});

t.test("status details with status 0 go to Connect's reader, which finds no error in an OK status", async (t) => {
  // grpc-status-details-bin: a google.rpc.Status with code 0 (empty message).
  const channel = await scripted(t, (stream) => stream.on("end", () => answerWith(stream, answer(), { "grpc-status": "0", "grpc-status-details-bin": "" })));
  const r = await push(channel);
  t.equal(r.answer.version, 5, "answered");
});

t.test("a stream reset without a status: Unavailable", async (t) => {
  const channel = await scripted(t, (stream) => stream.on("end", () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR)));
  const err = await failure(push(channel));
  t.equal(ConnectError.from(err).code, Code.Unavailable, "Unavailable");
});
