/**
 * The hand-written gRPC pull path answers exactly what the Connect handler does: the same tensors
 * through a gRPC client (fast path) and through a Connect-protocol client (Connect handler), for
 * every wire dtype and with chunks smaller than a tensor; and the same errors.
 */
import t from "tap";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Dtype, ParameterServerService } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { TensorCollector } from "@distributed-ps/common/tensor-stream/tensor-collector.ts";
import { frameTensorChunks } from "@distributed-ps/common/wire/grpc-framing.ts";
import { startTestServer, workersWithParameters } from "../helpers/test-server.ts";
import { selfSignedCertificate } from "../helpers/certificate.ts";

t.test("gRPC (fast path) and Connect protocol pulls return the same bytes", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", MAX_CHUNK_BYTES: "1024" });
  const [w] = await workersWithParameters(ts, 1);
  // A bigger tensor than the fixtures, so it spans several 1 KiB chunks.
  const connectClient = createClient(ParameterServerService, createConnectTransport({ baseUrl: `http://${ts.address}`, httpVersion: "2" }));
  for (const dtype of [Dtype.FLOAT32, Dtype.FLOAT16, Dtype.BFLOAT16]) {
    const fast = await w!.pull(0, dtype);
    const collector = new TensorCollector({ maxElements: 1e6, maxTensors: 10 });
    let count = 0;
    for await (const r of connectClient.pullParameters({ session: w!.session, dtype })) {
      if (r.message.case === "header") count = r.message.value.tensorCount;
      if (r.message.case === "chunk") collector.add(r.message.value);
    }
    const reference = collector.finish(count);
    t.same(
      fast.tensors.map((x) => [x.name, x.shape, Array.from(x.data)]),
      reference.map((x) => [x.name, x.shape, Array.from(x.data)]),
      `${Dtype[dtype]}: identical tensors`,
    );
  }
});

t.test("the fast path's framing splits tensors into chunks with offsets", async (t) => {
  const data = Float32Array.from({ length: 10 }, (_, i) => i);
  const chunks = [...frameTensorChunks({ name: "x", shape: [2, 5], data }, Dtype.FLOAT32, 16)];
  t.equal(chunks.length, 3, "10 floats in 16-byte chunks: 4 + 4 + 2");
  t.same(chunks.map(([, d]) => d.length), [16, 16, 8], "payload sizes");
  for (const [prefix, payload] of chunks) {
    t.equal(prefix.readUInt32BE(1), prefix.length - 5 + payload.length, "the envelope length covers prefix and payload");
  }
});

t.test("errors on the fast path carry the same codes", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2" });
  const a = await ts.register("a");
  const early = await a.pull().then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(early?.code, Code.FailedPrecondition, "before initialisation: FailedPrecondition");
  const forged = await a.client.pullParameters({ session: { slot: 0, token: "nope" } })[Symbol.asyncIterator]().next().then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(forged?.code, Code.FailedPrecondition, "a forged session: FailedPrecondition");
  t.match(forged?.rawMessage ?? "", /session for slot 0 is not current/, "with the handler's message");
});

t.test("with AUTH_TOKEN set the fast path needs the token too", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", AUTH_TOKEN: "a-token-of-sixteen-chars" });
  const { connectToServer } = await import("@distributed-ps/common/wire/client.ts");
  const noToken = connectToServer(ts.address);
  const err = await noToken.pullParameters({ session: { slot: 0, token: "x" } })[Symbol.asyncIterator]().next().then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(err?.code, Code.Unauthenticated, "no token: Unauthenticated");
});

t.test("the worker's hand-framed push path: over TLS with a token, and the same result as the generic client", async (t) => {
  const { readFileSync } = await import("node:fs");
  const { connectToServer } = await import("@distributed-ps/common/wire/client.ts");
  const { WorkerConnection } = await import("../../worker/src/connection/worker-connection.ts");
  const { gradient } = await import("../helpers/test-server.ts");
  const { cert, key } = selfSignedCertificate(t);
  const token = "a-token-of-sixteen-chars";
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "async", LEARNING_RATE: "1", TLS_CERT_FILE: cert, TLS_KEY_FILE: key, AUTH_TOKEN: token });
  const client = connectToServer(`localhost:${ts.server.port}`, { authToken: token, tls: { ca: readFileSync(cert) } });
  const w = await WorkerConnection.register(client, { preferredSlot: -1, jobFingerprint: "test-job", workerLabel: "tls" }, 10_000);
  await w.waitForParameters();
  await w.initParameters((await import("../helpers/test-server.ts")).initialParameters());
  const r = await w.push(gradient(0.5), 0, { exampleCount: 1, dtype: Dtype.FLOAT16 });
  t.equal(r.version, 1, "the fast push was applied");
  // The same gradient through the generic client's stream gives the same parameters.
  const { create } = await import("@bufbuild/protobuf");
  const { PushGradientsRequestSchema } = await import("@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js");
  const { chunkTensors } = await import("@distributed-ps/common/tensor-stream/chunk-tensors.ts");
  async function* generic() {
    yield create(PushGradientsRequestSchema, { message: { case: "header", value: { session: w.session, tensorCount: 2, baseVersion: 1, exampleCount: 1 } } });
    for (const c of chunkTensors(gradient(0.5), Dtype.FLOAT16)) yield create(PushGradientsRequestSchema, { message: { case: "chunk", value: c } });
  }
  await client.pushGradients(generic());
  const p = await w.pull();
  t.same(Array.from(p.tensors.find((x) => x.name === "w")!.data), [0, 1, 2, 3], "w = [1,2,3,4] − 0.5 (fast) − 0.5 (generic)");
  const stale = await w.push(gradient(1), 99, { exampleCount: 1 }).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(stale?.code, Code.InvalidArgument, "the server's refusal arrives with its code through the fast path");
  t.match(stale?.rawMessage ?? "", /claims version 99/, "and its message");
});
