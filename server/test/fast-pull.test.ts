/**
 * The hand-written gRPC pull path answers exactly what the Connect handler does: the same tensors
 * through a gRPC client (fast path) and through a Connect-protocol client (Connect handler), for
 * every wire dtype and with chunks smaller than a tensor; and the same errors.
 */
import t from "tap";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Dtype, ParameterServerService } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { TensorCollector } from "@distributed-ps/common/tensor-stream.ts";
import { encodeTensor } from "../src/fast-pull.ts";
import { startTestServer, workersWithParameters } from "./helpers/test-server.ts";

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
  const chunks = [...encodeTensor({ name: "x", shape: [2, 5], data }, Dtype.FLOAT32, 16)];
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
  const { connectToServer } = await import("@distributed-ps/common/client.ts");
  const noToken = connectToServer(ts.address);
  const err = await noToken.pullParameters({ session: { slot: 0, token: "x" } })[Symbol.asyncIterator]().next().then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(err?.code, Code.Unauthenticated, "no token: Unauthenticated");
});
