/**
 * The worker's hand-framed pull over its own HTTP/2 connection: against the real server (same
 * tensors as the generic client, token required) and against a scripted HTTP/2 server for what a
 * real server should never send (broken bodies, a stream that stalls, errors mid-stream).
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import t from "tap";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectToServer } from "@distributed-ps/common/wire/client.ts";
import { Dtype, PullParametersResponseSchema } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { envelopePrefix, frameTensorChunks } from "@distributed-ps/common/wire/grpc-framing.ts";
import { TensorCollector } from "@distributed-ps/common/tensor-stream/tensor-collector.ts";
import { TensorStreamError } from "@distributed-ps/common/tensor-stream/tensor-stream-error.ts";
import { answerWith, scripted } from "../helpers/scripted-server.ts";
import { startTestServer, workersWithParameters } from "../helpers/test-server.ts";
import { FastChannel } from "../../worker/src/wire/fast-channel.ts";
import { fastPull } from "../../worker/src/wire/fast-pull.ts";
import { WorkerConnection } from "../../worker/src/connection/worker-connection.ts";

const collector = () => new TensorCollector({ maxElements: 1e6, maxTensors: 100 });
const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as Error);

t.test("against the real server: the same tensors as the generic client, for every dtype", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", MAX_CHUNK_BYTES: "1024" });
  const [w] = await workersWithParameters(ts, 1);
  const channel = new FastChannel(ts.address, {});
  t.teardown(() => channel.close());
  for (const dtype of [Dtype.FLOAT32, Dtype.FLOAT16, Dtype.BFLOAT16]) {
    const c = collector();
    const { version, tensorCount } = await fastPull(channel, { session: w!.session, dtype }, c, { timeoutMs: 5000 });
    const reference = collector();
    let count = 0;
    for await (const r of w!.client.pullParameters({ session: w!.session, dtype })) {
      if (r.message.case === "header") count = r.message.value.tensorCount;
      if (r.message.case === "chunk") reference.add(r.message.value);
    }
    t.equal(version, 0, `${Dtype[dtype]}: version`);
    t.same(c.finish(tensorCount).map((x) => [x.name, Array.from(x.data)]), reference.finish(count).map((x) => [x.name, Array.from(x.data)]), `${Dtype[dtype]}: tensors`);
  }
  const refused = await failure(fastPull(channel, { session: { slot: 0, token: "forged" } }, collector(), { timeoutMs: 5000 }));
  t.equal(ConnectError.from(refused).code, Code.FailedPrecondition, "the server's refusal arrives with its code");
  t.match(refused?.message ?? "", /not current/, "and its message");
});

t.test("against the real server with AUTH_TOKEN: a wrong token is Unauthenticated, the right one pulls", async (t) => {
  const token = "a-token-of-sixteen-chars";
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", AUTH_TOKEN: token });
  const client = connectToServer(ts.address, { authToken: token });
  const w = await WorkerConnection.register(client, { preferredSlot: -1, jobFingerprint: "test-job", workerLabel: "auth" }, 10_000);
  await w.waitForParameters();
  await w.initParameters([{ name: "b", shape: [2], data: Float32Array.of(0.5, -0.5) }]);
  const pulled = await w.pull();
  t.same(Array.from(pulled.tensors[0]!.data), [0.5, -0.5], "the worker's pull goes through with the token");
  const wrong = new FastChannel(ts.address, { authToken: "another-token-of-sixteen" });
  t.teardown(() => wrong.close());
  const err = await failure(fastPull(wrong, { session: w.session }, collector(), { timeoutMs: 5000 }));
  t.equal(ConnectError.from(err).code, Code.Unauthenticated, "wrong token: Unauthenticated");
});

const header = (version: number, tensorCount: number) => {
  const m = toBinary(PullParametersResponseSchema, create(PullParametersResponseSchema, { message: { case: "header", value: { version, tensorCount } } }));
  return Buffer.concat([envelopePrefix(m.length), m]);
};

function body(values: number[]): Buffer {
  const parts: Uint8Array[] = [header(7, 1)];
  for (const [prefix, data] of frameTensorChunks({ name: "x", shape: [values.length], data: Float32Array.from(values) }, Dtype.FLOAT32, 8)) parts.push(prefix, data);
  return Buffer.concat(parts);
}

t.test("against a scripted server", async (t) => {
  t.test("a valid answer, with the token and a deadline on the request", async (t) => {
    let requestHeaders: http2.IncomingHttpHeaders = {};
    const channel = await scripted(t, (stream, headers) => {
      requestHeaders = headers;
      answerWith(stream, body([1, 2, 3]));
    });
    const c = collector();
    const r = await fastPull(channel, { session: { slot: 0, token: "s" } }, c, { timeoutMs: 5000 });
    t.same([r.version, Array.from(c.finish(r.tensorCount)[0]!.data)], [7, [1, 2, 3]], "version and tensor");
    t.equal(requestHeaders.authorization, "Bearer tok", "the bearer token is sent");
    t.match(String(requestHeaders["grpc-timeout"]), /^\d+m$/, "and the deadline");
  });

  t.test("a truncated body with status 0 is a malformed answer (Internal)", async (t) => {
    const channel = await scripted(t, (stream) => {
      const b = body([1, 2, 3]);
      answerWith(stream, b.subarray(0, b.length - 2));
    });
    const err = await failure(fastPull(channel, { session: { slot: 0, token: "s" } }, collector(), { timeoutMs: 5000 }));
    t.equal(ConnectError.from(err).code, Code.Internal, "Internal");
    t.match(err?.message ?? "", /malformed pull answer: pull answer ended inside message/, String(err?.message));
  });

  t.test("garbage is refused as soon as it arrives, and the stream is cancelled", async (t) => {
    let closed!: (rstCode: number) => void;
    const rstCode = new Promise<number>((resolve) => (closed = resolve));
    const channel = await scripted(t, (stream) => {
      stream.respond({ ":status": 200, "content-type": "application/grpc+proto" });
      stream.write(Buffer.from([0x80, 0, 0, 0, 1, 0]));
      stream.on("close", () => closed(stream.rstCode));
      // never ends: only the client's refusal ends the call
    });
    const err = await failure(fastPull(channel, { session: { slot: 0, token: "s" } }, collector(), { timeoutMs: 5000 }));
    t.equal(ConnectError.from(err).code, Code.Internal, "Internal");
    t.match(err?.message ?? "", /envelope flags 128/, String(err?.message));
    t.equal(await rstCode, http2.constants.NGHTTP2_CANCEL, "the client reset the stream with CANCEL");
  });

  t.test("tensors that break the rules are a TensorStreamError", async (t) => {
    const channel = await scripted(t, (stream) => {
      answerWith(stream, body([1, NaN, 3]));
    });
    const err = await failure(fastPull(channel, { session: { slot: 0, token: "s" } }, collector(), { timeoutMs: 5000 }));
    t.type(err, TensorStreamError, "TensorStreamError");
    t.match(err?.message ?? "", /NaN or infinite/, String(err?.message));
    // The connection stays usable: a refusal of the answer says nothing about the connection.
  });

  t.test("an error status mid-stream wins over the broken body it leaves", async (t) => {
    const channel = await scripted(t, (stream) => {
      const b = body([1, 2, 3]);
      answerWith(stream, b.subarray(0, b.length - 5), { "grpc-status": String(Code.ResourceExhausted), "grpc-message": encodeURIComponent("too busy: try later") });
    });
    const err = await failure(fastPull(channel, { session: { slot: 0, token: "s" } }, collector(), { timeoutMs: 5000 }));
    t.equal(ConnectError.from(err).code, Code.ResourceExhausted, "the server's code");
    t.match(err?.message ?? "", /too busy: try later/, "and its message, decoded");
  });

  t.test("a trailers-only refusal", async (t) => {
    const channel = await scripted(t, (stream) => {
      stream.respond({ ":status": 200, "content-type": "application/grpc+proto", "grpc-status": String(Code.Unauthenticated), "grpc-message": "no" }, { endStream: true });
    });
    const err = await failure(fastPull(channel, { session: { slot: 0, token: "s" } }, collector(), { timeoutMs: 5000 }));
    t.equal(ConnectError.from(err).code, Code.Unauthenticated, "Unauthenticated");
  });

  t.test("a stream that stalls: the deadline ends it (DeadlineExceeded), an abort ends it (Canceled)", async (t) => {
    const channel = await scripted(t, (stream) => {
      stream.respond({ ":status": 200, "content-type": "application/grpc+proto" });
      const b = body([1, 2, 3]);
      stream.write(b.subarray(0, 20)); // then nothing
    });
    const started = Date.now();
    const late = await failure(fastPull(channel, { session: { slot: 0, token: "s" } }, collector(), { timeoutMs: 200 }));
    t.equal(ConnectError.from(late).code, Code.DeadlineExceeded, "DeadlineExceeded");
    t.ok(Date.now() - started < 2000, "promptly");
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 100);
    const aborted = await failure(fastPull(channel, { session: { slot: 0, token: "s" } }, collector(), { timeoutMs: 10_000, signal: abort.signal }));
    t.equal(ConnectError.from(aborted).code, Code.Canceled, "Canceled");
    const already = await failure(fastPull(channel, { session: { slot: 0, token: "s" } }, collector(), { timeoutMs: 10_000, signal: abort.signal }));
    t.ok(already !== undefined, "an already aborted signal fails at once");
  });

  t.test("a server that is gone: Unavailable", async (t) => {
    const server = http2.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    await new Promise((resolve) => server.close(resolve));
    const channel = new FastChannel(`127.0.0.1:${port}`, {});
    const err = await failure(fastPull(channel, { session: { slot: 0, token: "s" } }, collector(), { timeoutMs: 5000 }));
    t.equal(ConnectError.from(err).code, Code.Unavailable, "Unavailable");
  });
});
