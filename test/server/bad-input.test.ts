/**
 * Malformed gradients are refused with InvalidArgument and a message that says what was wrong, and
 * they leave the parameters and the open step untouched.
 */
import t from "tap";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { Dtype, PushGradientsRequestSchema, type TensorChunk } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import type { WorkerConnection } from "../../worker/src/connection/worker-connection.ts";
import { gradient, initialParameters, startTestServer, values, workersWithParameters } from "../helpers/test-server.ts";

type ChunkInit = { name: string; shape?: number[]; dtype?: Dtype; byteOffset?: bigint; data: Uint8Array };

function f32(...xs: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(xs).buffer);
}

/** Pushes hand-made chunks after a valid header; resolves to the error, or undefined on success. */
async function rawPush(w: WorkerConnection, chunks: ChunkInit[], o: { tensorCount?: number; baseVersion?: number } = {}) {
  async function* messages() {
    yield create(PushGradientsRequestSchema, {
      message: { case: "header", value: { session: w.session, tensorCount: o.tensorCount ?? 2, baseVersion: o.baseVersion ?? 0, exampleCount: 1 } },
    });
    for (const c of chunks) {
      yield create(PushGradientsRequestSchema, { message: { case: "chunk", value: { byteOffset: 0n, dtype: Dtype.FLOAT32, ...c } as TensorChunk } });
    }
  }
  return w.client.pushGradients(messages()).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
}

const goodB: ChunkInit = { name: "b", shape: [2], data: f32(1, 1) };

const cases: { what: string; chunks: ChunkInit[]; tensorCount?: number; message: RegExp }[] = [
  { what: "wrong shape", chunks: [{ name: "w", shape: [4], data: f32(1, 1, 1, 1) }, goodB], message: /shape \[4\], the parameter has shape \[2,2\]/ },
  { what: "unknown tensor name", chunks: [{ name: "nope", shape: [2, 2], data: f32(1, 1, 1, 1) }, goodB], message: /unknown tensor "nope"/ },
  { what: "unspecified dtype", chunks: [{ name: "w", shape: [2, 2], dtype: Dtype.UNSPECIFIED, data: f32(1, 1, 1, 1) }, goodB], message: /unsupported dtype/ },
  { what: "NaN in the gradient", chunks: [{ name: "w", shape: [2, 2], data: f32(1, Number.NaN, 1, 1) }, goodB], message: /NaN or infinite/ },
  { what: "Infinity in the gradient", chunks: [{ name: "w", shape: [2, 2], data: f32(1, 1, Number.POSITIVE_INFINITY, 1) }, goodB], message: /NaN or infinite/ },
  { what: "too few bytes", chunks: [{ name: "w", shape: [2, 2], data: f32(1, 1, 1) }, goodB], message: /ended after 12 of 16 bytes/ },
  { what: "too many bytes", chunks: [{ name: "w", shape: [2, 2], data: f32(1, 1, 1, 1, 1) }, goodB], message: /20 bytes sent, shape holds 16/ },
  { what: "byte length not a whole element", chunks: [{ name: "w", shape: [2, 2], data: new Uint8Array(15) }, goodB], message: /not a whole number of 4-byte elements/ },
  {
    what: "chunks out of order",
    chunks: [{ name: "w", shape: [2, 2], data: f32(1, 1) }, { name: "w", byteOffset: 12n, data: f32(1) }, goodB],
    message: /chunk at byte 12, expected byte 8/,
  },
  { what: "a missing tensor", chunks: [{ name: "w", shape: [2, 2], data: f32(1, 1, 1, 1) }], message: /stream carried 1 tensors, header announced 2/ },
  { what: "a tensor count that differs from the parameters", chunks: [goodB], tensorCount: 1, message: /header announces 1 tensors, the parameters have 2/ },
  { what: "a tensor sent twice", chunks: [goodB, goodB], message: /tensor "b" sent twice/ },
];

t.test("malformed gradients are refused and change nothing", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync", LEARNING_RATE: "0.1" });
  const [a, b] = await workersWithParameters(ts, 2);
  for (const c of cases) {
    const err = await rawPush(a!, c.chunks, { tensorCount: c.tensorCount });
    t.equal(err?.code, Code.InvalidArgument, `${c.what}: InvalidArgument`);
    t.match(err?.rawMessage ?? "", c.message, `${c.what}: the message says what was wrong`);
  }
  const p = await a!.pull();
  t.equal(p.version, 0, "no refused gradient advanced the version");
  t.same(values(p.tensors), values(initialParameters()), "parameters are unchanged");

  // The refused pushes did not occupy slot 0's place in the step: a good push still counts.
  const [ra] = await Promise.all([a!.push(gradient(1), 0, { exampleCount: 1 }), b!.push(gradient(3), 0, { exampleCount: 1 })]);
  t.equal(ra.contributors, 2, "after all the bad input, the step completes with both workers");
  t.ok(Math.abs(values((await a!.pull()).tensors).w![0]! - 0.8) < 1e-6, "and applies exactly mean(1,3)");
});

t.test("calls with an unknown or stale session are refused", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2" });
  const [a] = await workersWithParameters(ts, 2);
  const forged = await a!.client.heartbeat({ session: { slot: 0, token: "forged" } }).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(forged?.code, Code.FailedPrecondition, "a wrong token is FailedPrecondition");
  const noSlot = await a!.client.heartbeat({ session: { slot: 99, token: a!.session.token } }).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(noSlot?.code, Code.FailedPrecondition, "a slot that does not exist is FailedPrecondition");
  t.match(noSlot?.rawMessage ?? "", /slot 99 does not exist/, "the message names the slot");
  const missing = await a!.client.heartbeat({}).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(missing?.code, Code.InvalidArgument, "no session at all is InvalidArgument");
});

t.test("registration beyond the worker count is ResourceExhausted", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2" });
  await ts.register("a");
  await ts.register("b");
  const third = await ts.register("c").then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(third?.code, Code.ResourceExhausted, "a third worker gets ResourceExhausted");
  t.match(third?.rawMessage ?? "", /no free slot/, "the message says why");
});
