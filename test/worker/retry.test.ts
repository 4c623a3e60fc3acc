/**
 * What a worker does after a failed call is decided by who failed and the gRPC status code, never
 * by the wording of the message. Each failure here comes from a real transport: a raw HTTP/2
 * server that resets streams the way a stopping server does, a port nobody listens on, a
 * connection cut mid-call, and the parameter server's own refusals.
 */
import http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import t, { type Test } from "tap";
import { ConnectError } from "@connectrpc/connect";
import { connectToServer } from "@distributed-ps/common/wire/client.ts";
import { Dtype } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { formatFingerprint } from "@distributed-ps/common/job-identity.ts";
import { gradient, startTestServer, workersWithParameters } from "../helpers/test-server.ts";
import { WorkerConnection } from "../../worker/src/connection/worker-connection.ts";
import { classifyFailure } from "../../worker/src/connection/retry.ts";
import { freePort } from "../helpers/processes.ts";

/** A raw HTTP/2 server that does `answer` to every stream; resolves with its address. */
async function rawServer(t: Test, answer: (stream: http2.ServerHttp2Stream) => void): Promise<string> {
  const server = http2.createServer();
  server.on("stream", (stream) => {
    stream.on("error", () => {});
    answer(stream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => sessions.add(s));
  t.teardown(() => {
    for (const s of sessions) s.destroy();
  });
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The error `p` rejects with. */
async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded");
}

const session = { slot: 0, token: "t" };
const registration = { session, config: { mode: 1, totalWorkers: 1, stalenessBound: 0, leaseMs: 1000, heartbeatIntervalMs: 250, maxChunkBytes: 1 << 20, shards: [] } } as never;

t.test("a stream refused by a stopping server (RST_STREAM REFUSED_STREAM) is 'unreachable': retry", async (t) => {
  const address = await rawServer(t, (stream) => stream.close(http2.constants.NGHTTP2_REFUSED_STREAM));
  const client = connectToServer(address);
  const generic = await failure(client.heartbeat({ session }, { timeoutMs: 5000 }));
  // The message a worker used to match (case-sensitively, and so missed) before it exited 1.
  t.match(generic.message, /Stream closed with error code NGHTTP2_REFUSED_STREAM/, `the generic client reports: ${generic.message}`);
  t.equal(classifyFailure(generic), "unreachable", "the generic client's call: unreachable, whatever the wording");
  const conn = new WorkerConnection(client, registration, 5000);
  t.equal(classifyFailure(await failure(conn.pull(0, Dtype.FLOAT32))), "unreachable", "the hand-framed pull: unreachable");
  t.equal(classifyFailure(await failure(conn.push(gradient(1), 0, { exampleCount: 1 }))), "unreachable", "the hand-framed push: unreachable");
});

t.test("a connection cut mid-call (which Connect reports as Aborted) is 'unreachable', not a refused gradient", async (t) => {
  const address = await rawServer(t, (stream) => (stream.session!.socket as Socket).resetAndDestroy()); // a TCP reset
  const client = connectToServer(address);
  const err = await failure(client.nextAssignment({ session, epochs: 1 }, { timeoutMs: 5000 }));
  t.equal(classifyFailure(err), "unreachable", `${err.message}: unreachable`);
  const conn = new WorkerConnection(client, registration, 5000);
  t.equal(classifyFailure(await failure(conn.push(gradient(1), 0, { exampleCount: 1 }))), "unreachable", "the hand-framed push: unreachable");
});

t.test("nobody listening (ECONNREFUSED) is 'unreachable'", async (t) => {
  const client = connectToServer(`127.0.0.1:${await freePort()}`);
  t.equal(classifyFailure(await failure(client.getStatus({}, { timeoutMs: 5000 }))), "unreachable", "refused connection: unreachable");
});

t.test("an HTTP error without a gRPC status (a proxy's 401) is not retried", async (t) => {
  const address = await rawServer(t, (stream) => {
    stream.respond({ ":status": 401 });
    stream.end();
  });
  const conn = new WorkerConnection(connectToServer(address), registration, 5000);
  t.equal(classifyFailure(await failure(conn.push(gradient(1), 0, { exampleCount: 1 }))), "fatal", "401 from something that is not a gRPC server: fatal");
});

t.test("the parameter server's own answers are classified by code and ErrorDetail", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", SERVER_MODE: "sync", SEED: "42" });
  const fingerprint = formatFingerprint({ dataset: "synthetic", seed: 42, epochs: 1 });
  const client = connectToServer(ts.address);
  const join = (fp: string) => WorkerConnection.register(client, { preferredSlot: -1, jobFingerprint: fp, workerLabel: "t" }, 5000);
  t.equal(classifyFailure(await failure(join(formatFingerprint({ dataset: "synthetic", seed: 7, epochs: 1 })))), "job-mismatch", "a wrong SEED: job-mismatch");
  const [w] = await workersWithParameters({ ...ts, register: () => join(fingerprint) }, 1);
  const a = await w!.nextAssignment(1);
  if (a.kind !== "train") throw new Error(`expected a part, got ${a.kind}`);
  await w!.push(gradient(1), 0, { exampleCount: 32, position: { epoch: 0, batch: 1, part: a.part, batches: 1 } });
  const stale = await failure(w!.push(gradient(1), 0, { exampleCount: 32, position: { epoch: 0, batch: 2, part: a.part, batches: 2 } }));
  t.equal(classifyFailure(stale), "refused", `a gradient for a step already applied (${stale.rawMessage}): refused, recompute`);
  const bad = await failure(w!.push(gradient(1), 5, { exampleCount: 32 }));
  t.equal(classifyFailure(bad), "fatal", `a push claiming a future version (${bad.rawMessage}): fatal`);
  const unknown = await failure(client.heartbeat({ session: { slot: 0, token: "not-a-session" } }));
  t.equal(classifyFailure(unknown), "session-lost", "an unknown session: session-lost, register again");
  t.equal((await w!.nextAssignment(1)).kind, "done", "every part trained");
  await w!.finish({});
  t.ok(ts.server.run.complete, "the run is complete");
  t.equal(classifyFailure(await failure(join(fingerprint))), "run-complete", "registering after that: run-complete");
});
