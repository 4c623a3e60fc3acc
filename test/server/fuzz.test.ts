/**
 * Fuzzing a live server: a bounded number of random and mutated requests — raw bytes on the TCP
 * port, random bodies on every RPC path, and mutations of a valid PushGradients stream (flipped,
 * overwritten, inserted and removed bytes, truncated and duplicated messages, broken gRPC framing)
 * — and then a check that the server still serves and that the parameters are exactly what the
 * accepted pushes make them.
 *
 * The server runs in async mode with plain SGD (lr 1) so that every accepted push is applied at
 * once and the expected parameters are the initial ones minus the sum of the accepted gradients,
 * whatever order they came in. What "accepted" gradient a mutated stream carried is decoded here
 * from the exact bytes that were sent.
 */
import t from "tap";
import http2 from "node:http2";
import net from "node:net";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Dtype, ParameterServerService, PushGradientsRequestSchema } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { chunkTensors } from "@distributed-ps/common/tensor-stream/chunk-tensors.ts";
import { TensorCollector } from "@distributed-ps/common/tensor-stream/tensor-collector.ts";
import { gradient, initialParameters, startTestServer, values } from "../helpers/test-server.ts";

const ITERATIONS = 1500;
// Every RPC but SetWorkerCount: random bytes there often parse as a valid count, a legitimate
// request that changes the run (its bad input — a count out of range — is tested in elastic.test.ts).
const RPCS = ParameterServerService.methods.map((m) => m.name).filter((name) => name !== "SetWorkerCount");

/** A small seeded PRNG (mulberry32): the fuzz run is the same every time. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function frame(messages: Uint8Array[], lengthDelta = 0, flag = 0): Buffer {
  return Buffer.concat(
    messages.map((m) => {
      const head = Buffer.alloc(5);
      head[0] = flag;
      head.writeUInt32BE(Math.max(0, m.length + lengthDelta), 1);
      return Buffer.concat([head, m]);
    }),
  );
}

interface Answer {
  status: number | "no answer";
}

function call(session: http2.ClientHttp2Session, rpc: string, body: Buffer): Promise<Answer> {
  return new Promise((resolve) => {
    const req = session.request({
      ":method": "POST",
      ":path": `/paramserver.v1.ParameterServerService/${rpc}`,
      "content-type": "application/grpc+proto",
      te: "trailers",
    });
    let status: number | undefined;
    const timer = setTimeout(() => {
      req.close(http2.constants.NGHTTP2_CANCEL);
      resolve({ status: "no answer" });
    }, 5000);
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) status = Number(h["grpc-status"]);
    };
    req.on("response", take);
    req.on("trailers", take);
    req.on("data", () => {});
    req.on("error", () => {});
    req.on("close", () => {
      clearTimeout(timer);
      resolve({ status: status ?? "no answer" });
    });
    req.end(body);
  });
}

t.test("random and mutated requests: the server keeps serving and the parameters stay exact", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", SERVER_MODE: "async", OPTIMIZER: "sgd", LEARNING_RATE: "1", MAX_STALENESS: "1000000", LEASE_MS: "600000" });
  const worker = await ts.register("fuzzer");
  await worker.waitForParameters();
  await worker.initParameters(initialParameters());
  const random = prng(20261129);
  const randomBytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));

  const session = http2.connect(`http://${ts.address}`);
  t.teardown(() => session.close());
  const valid = [
    create(PushGradientsRequestSchema, { message: { case: "header", value: { session: worker.session, tensorCount: 2, baseVersion: 0, exampleCount: 1 } } }),
    ...[...chunkTensors(gradient(0.25), Dtype.FLOAT32, 8)].map((chunk) => create(PushGradientsRequestSchema, { message: { case: "chunk", value: chunk } })),
  ].map((m) => toBinary(PushGradientsRequestSchema, m));

  const expected = initialParameters();
  const statuses = new Map<string, number>();
  const note = (kind: string, a: Answer) => statuses.set(`${kind}:${a.status}`, (statuses.get(`${kind}:${a.status}`) ?? 0) + 1);
  let accepted = 0;
  let unanswered = 0;

  for (let i = 0; i < ITERATIONS; i++) {
    const r = random();
    if (r < 0.1) {
      // Garbage on the raw TCP port: must not take the server down.
      await new Promise<void>((resolve) => {
        const sock = net.connect({ host: "127.0.0.1", port: ts.server.port }, () => {
          sock.write(randomBytes(1 + Math.floor(random() * 200)));
          setTimeout(() => sock.destroy(), 20);
        });
        sock.on("error", () => resolve());
        sock.on("close", () => resolve());
      });
      continue;
    }
    if (r < 0.35) {
      const rpc = RPCS[Math.floor(random() * RPCS.length)]!;
      const body = random() < 0.5 ? randomBytes(Math.floor(random() * 300)) : frame([randomBytes(Math.floor(random() * 300))]);
      const a = await call(session, rpc, body);
      if (a.status === "no answer") unanswered++;
      note("random", a);
      continue;
    }
    // A mutated PushGradients stream from the real session.
    const msgs = valid.map((m) => Uint8Array.from(m));
    let lengthDelta = 0;
    let flag = 0;
    const target = Math.floor(random() * msgs.length);
    const m = msgs[target]!;
    switch (Math.floor(random() * 8)) {
      case 0: // flip one bit
        if (m.length > 0) m[Math.floor(random() * m.length)]! ^= 1 << Math.floor(random() * 8);
        break;
      case 1: // overwrite a byte
        if (m.length > 0) m[Math.floor(random() * m.length)] = Math.floor(random() * 256);
        break;
      case 2: // truncate a message
        msgs[target] = m.subarray(0, Math.floor(random() * m.length));
        break;
      case 3: // insert random bytes
        msgs[target] = Buffer.concat([m.subarray(0, 3), randomBytes(1 + Math.floor(random() * 8)), m.subarray(3)]);
        break;
      case 4: // drop a message
        msgs.splice(target, 1);
        break;
      case 5: // duplicate a message
        msgs.splice(target, 0, m);
        break;
      case 6: // swap two messages
        msgs[target] = msgs[0]!;
        msgs[0] = m;
        break;
      case 7: // broken framing: wrong length prefix, or the "compressed" flag without compression
        if (random() < 0.5) lengthDelta = random() < 0.5 ? -1 : 3;
        else flag = 1;
        break;
    }
    const a = await call(session, "PushGradients", frame(msgs, lengthDelta, flag));
    note("push", a);
    if (a.status === "no answer") unanswered++;
    if (a.status === 0) {
      // Accepted: decode what was sent to know which gradient the server applied.
      const collector = new TensorCollector({ maxElements: 100, maxTensors: 10 });
      for (const bytes of msgs.slice(1)) {
        const msg = fromBinary(PushGradientsRequestSchema, bytes);
        if (msg.message.case === "chunk") collector.add(msg.message.value);
      }
      const grads = collector.finish(2);
      for (const p of expected) {
        const g = grads.find((x) => x.name === p.name)!;
        for (let k = 0; k < p.data.length; k++) p.data[k] = p.data[k]! - g.data[k]!;
      }
      accepted++;
    }
  }
  t.comment(`statuses (kind:grpc-status → count): ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
  t.equal(unanswered, 0, "every request got an answer (nothing hung)");
  t.ok((statuses.get("push:3") ?? 0) > 0, "malformed pushes were refused with InvalidArgument");

  // The server still serves, and holds exactly initial − Σ accepted gradients.
  const now = await worker.pull();
  t.equal(now.version, accepted, `one version per accepted push (${accepted} of them)`);
  const got = values(now.tensors);
  const want = values(expected);
  for (const name of Object.keys(want)) {
    const worst = Math.max(...want[name]!.map((w, k) => Math.abs(w - got[name]![k]!)));
    t.ok(worst < 1e-3, `"${name}" equals initial minus the accepted gradients (max difference ${worst})`);
  }
  const r = await worker.push(gradient(1), now.version, { exampleCount: 1 });
  t.equal(r.version, accepted + 1, "a normal push still works afterwards");
});
