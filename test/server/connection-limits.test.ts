/**
 * The bounds on what a client can hold (server/src/rpc/connection-limits.ts), against a real server
 * over real sockets: streams per connection, streams on which the client stopped sending or
 * reading, connections with no stream, and the number of connections — while a push waiting at
 * the sync barrier longer than every idle bound still completes.
 */
import t, { type Test } from "tap";
import http2 from "node:http2";
import net from "node:net";
import { once } from "node:events";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  PullParametersRequestSchema,
  PushGradientsRequestSchema,
  type WorkerSession,
} from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { connectToServer } from "@distributed-ps/common/wire/client.ts";
import { envelopePrefix } from "@distributed-ps/common/wire/grpc-framing.ts";
import { WorkerConnection } from "../../worker/src/connection/worker-connection.ts";
import { gradient, initialParameters, settledWithin, startTestServer, workersWithParameters, type TestServer } from "../helpers/test-server.ts";
import { selfSignedCertificate } from "../helpers/certificate.ts";
import { waitUntil } from "../helpers/wait.ts";

const PUSH_PATH = "/paramserver.v1.ParameterServerService/PushGradients";
const PULL_PATH = "/paramserver.v1.ParameterServerService/PullParameters";
const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;

/** Bound on every wait for something the server must do after a 300 ms idle time: ample on a busy machine. */
const WITHIN_MS = 15_000;

/** `p`, or a rejection saying what did not happen within `ms`. */
async function within<T>(p: Promise<T>, what: string, ms = WITHIN_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`not within ${ms} ms: ${what}`)), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until `ok()` holds, failing after WITHIN_MS. */
const until = (ok: () => boolean, what: string) => waitUntil(ok, what, { timeoutMs: WITHIN_MS });

function port(ts: TestServer): number {
  return Number(ts.address.split(":")[1]);
}

/** An HTTP/2 client session that the test closes at its end. */
function h2(t: Test, ts: TestServer, options: http2.ClientSessionOptions = {}): http2.ClientHttp2Session {
  const session = http2.connect(`http://${ts.address}`, options);
  session.on("error", () => {}); // what a test expects of the session it checks through events
  t.teardown(() => session.destroy());
  return session;
}

/** A gRPC message in its envelope. */
function envelope(message: Uint8Array): Buffer {
  return Buffer.concat([envelopePrefix(message.length), message]);
}

function pushHeader(session: WorkerSession): Buffer {
  return envelope(
    toBinary(PushGradientsRequestSchema, create(PushGradientsRequestSchema, { message: { case: "header", value: { session, tensorCount: 2, baseVersion: 0, exampleCount: 1 } } })),
  );
}

/** Resolves with the stream's RST_STREAM code (0 when it closed normally) once it closed. */
async function closeCode(stream: http2.ClientHttp2Stream): Promise<number> {
  stream.on("error", () => {}); // a reset stream errors; the code is what the test checks
  if (!stream.closed) await once(stream, "close");
  return stream.rstCode ?? -1;
}

/**
 * An HTTP/2 client written frame by frame, for what Node's client never does (opening more
 * streams than the server allows). Header blocks are HPACK literals without indexing.
 */
class RawH2 {
  static readonly DATA = 0;
  static readonly HEADERS = 1;
  static readonly RST_STREAM = 3;
  static readonly SETTINGS = 4;
  static readonly GOAWAY = 7;

  readonly socket: net.Socket;
  readonly frames: { type: number; flags: number; stream: number; payload: Buffer }[] = [];
  #pending = Buffer.alloc(0);
  #listeners = new Set<() => void>();

  constructor(t: Test, port: number) {
    this.socket = net.connect(port, "127.0.0.1");
    this.socket.on("error", () => {});
    this.socket.on("data", (bytes: Buffer) => this.#read(bytes));
    this.socket.on("close", () => this.#notify());
    t.teardown(() => this.socket.destroy());
    this.socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    this.send(RawH2.SETTINGS, 0, 0, Buffer.alloc(0));
  }

  send(type: number, flags: number, stream: number, payload: Buffer): void {
    const head = Buffer.alloc(9);
    head.writeUIntBE(payload.length, 0, 3);
    head[3] = type;
    head[4] = flags;
    head.writeUInt32BE(stream, 5);
    this.socket.write(Buffer.concat([head, payload]));
  }

  /** HEADERS (END_HEADERS) of a gRPC request to `path` on `stream`, request left open. */
  request(stream: number, path: string, authority: string): void {
    const fields = [[":method", "POST"], [":scheme", "http"], [":path", path], [":authority", authority], ["content-type", "application/grpc"], ["te", "trailers"]];
    const block = Buffer.concat(
      fields.map(([name, value]) => {
        if (name!.length > 126 || value!.length > 126) throw new Error("longer than a one-byte HPACK length");
        return Buffer.concat([Buffer.from([0, name!.length]), Buffer.from(name!), Buffer.from([value!.length]), Buffer.from(value!)]);
      }),
    );
    this.send(RawH2.HEADERS, 0x4, stream, block);
  }

  /** The first frame (received so far or later) that `match` accepts. */
  async frame(match: (f: RawH2["frames"][number]) => boolean, what: string): Promise<RawH2["frames"][number]> {
    return within(
      new Promise((resolve, reject) => {
        const check = () => {
          const f = this.frames.find(match);
          if (f !== undefined) resolve(f);
          else if (this.socket.destroyed) reject(new Error(`connection closed before ${what}`));
          else return;
          this.#listeners.delete(check);
        };
        this.#listeners.add(check);
        check();
      }),
      what,
    );
  }

  #read(bytes: Buffer): void {
    this.#pending = Buffer.concat([this.#pending, bytes]);
    while (this.#pending.length >= 9) {
      const length = this.#pending.readUIntBE(0, 3);
      if (this.#pending.length < 9 + length) break;
      const p = this.#pending;
      this.frames.push({ type: p[3]!, flags: p[4]!, stream: p.readUInt32BE(5) & 0x7fffffff, payload: p.subarray(9, 9 + length) });
      this.#pending = p.subarray(9 + length);
    }
    this.#notify();
  }

  #notify(): void {
    for (const l of [...this.#listeners]) l();
  }
}

const warnings = (ts: TestServer, about: RegExp) => ts.logs.filter((l) => / WARN /.test(l) && about.test(l));

t.test("MAX_STREAMS_PER_CONNECTION: N streams are open, the next one is refused", async (t) => {
  const ts = await startTestServer(t, { MAX_STREAMS_PER_CONNECTION: "3" });
  const [settings] = (await within(once(h2(t, ts), "remoteSettings"), "the server's SETTINGS")) as [http2.Settings];
  t.equal(settings.maxConcurrentStreams, 3, "the server advertises SETTINGS_MAX_CONCURRENT_STREAMS = 3");

  // A client that does not wait for the server's SETTINGS: four requests, none of them finished.
  const eager = new RawH2(t, port(ts));
  await eager.frame((f) => f.type === RawH2.SETTINGS && (f.flags & 1) === 0, "the server's SETTINGS");
  for (const id of [1, 3, 5, 7]) eager.request(id, PUSH_PATH, ts.address);
  const refused = await eager.frame((f) => f.type === RawH2.RST_STREAM, "a RST_STREAM");
  t.equal(refused.stream, 7, "the fourth stream is the one refused");
  t.equal(refused.payload.readUInt32BE(0), NGHTTP2_REFUSED_STREAM, "with REFUSED_STREAM (the client may retry it)");
  await within(until(() => ts.server.limits.streams === 3, "3 streams open"), "the server holding the first three");
  t.same(eager.frames.filter((f) => f.type === RawH2.RST_STREAM || f.type === RawH2.GOAWAY).map((f) => f.stream), [7], "the first three stay open");

  // A client that acknowledged the limit and breaks it anyway breaks the protocol: it loses the connection.
  const rogue = new RawH2(t, port(ts));
  await rogue.frame((f) => f.type === RawH2.SETTINGS && (f.flags & 1) === 0, "the server's SETTINGS");
  rogue.send(RawH2.SETTINGS, 1, 0, Buffer.alloc(0));
  for (const id of [1, 3, 5, 7]) rogue.request(id, PUSH_PATH, ts.address);
  const goaway = await rogue.frame((f) => f.type === RawH2.GOAWAY, "a GOAWAY");
  t.equal(goaway.payload.readUInt32BE(4), NGHTTP2_PROTOCOL_ERROR, "GOAWAY(PROTOCOL_ERROR)");
  await within(once(rogue.socket, "close"), "the connection to close");
});

t.test("a push whose client stopped sending is reset after STREAM_IDLE_TIMEOUT_MS, and the server carries on", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync", STREAM_IDLE_TIMEOUT_MS: "300", WAIT_TIMEOUT_MS: "2000" });
  const [a, b] = await workersWithParameters(ts, 2);
  const client = h2(t, ts);
  const grpc = { ":method": "POST", ":path": PUSH_PATH, "content-type": "application/grpc", te: "trailers" };
  // Each sends its HTTP headers and, but for the last, the push's header message, then nothing.
  const handFramed = client.request(grpc, { endStream: false });
  handFramed.write(pushHeader(a!.session));
  // The Connect protocol's streams take the Connect handler (and frame messages as gRPC does).
  const viaConnect = client.request({ ...grpc, "content-type": "application/connect+proto" }, { endStream: false });
  viaConnect.write(pushHeader(b!.session));
  const headersOnly = client.request(grpc, { endStream: false });
  // Meanwhile the server waits, longer than the idle time, for a version it does not reach: not idle.
  const waiting = a!.pull(1);

  t.equal(await within(closeCode(handFramed), "the hand-framed push reset"), NGHTTP2_CANCEL, "hand-framed push (fast-push-handler.ts): reset with CANCEL");
  t.equal(await within(closeCode(viaConnect), "the Connect push reset"), NGHTTP2_CANCEL, "push through the Connect handler: reset with CANCEL");
  t.equal(await within(closeCode(headersOnly), "the headers-only push reset"), NGHTTP2_CANCEL, "push that sent only its HTTP headers: reset with CANCEL");
  t.equal((await waiting).version, 0, "the pull waiting for version 1 is answered at WAIT_TIMEOUT_MS, not reset");
  await until(() => ts.server.limits.streams === 0, "no stream open");
  t.pass("the server holds no stream any more");

  // Nothing of the stalled pushes counted or stayed behind: the step takes one push per worker.
  const [ra, rb] = await Promise.all([a!.push(gradient(1), 0, { exampleCount: 1 }), b!.push(gradient(3), 0, { exampleCount: 1 })]);
  t.same([ra.version, ra.contributors, rb.contributors], [1, 2, 2], "the next step averages the two normal pushes");
  t.equal(warnings(ts, /reset/).length, 1, "three resets, one warning (the rest are summed up later)");
});

t.test("a push waiting at the sync barrier longer than both idle bounds (and the old 60 s cut) completes", async (t) => {
  const ts = await startTestServer(t, {
    TOTAL_WORKERS_EXPECTED: "2",
    SERVER_MODE: "sync",
    STREAM_IDLE_TIMEOUT_MS: "500",
    CONNECTION_IDLE_TIMEOUT_MS: "1000",
  });
  // Calls may take long here: the push waits over a minute at the barrier.
  const client = connectToServer(ts.address);
  const join = (label: string) => WorkerConnection.register(client, { preferredSlot: -1, jobFingerprint: "test-job", workerLabel: label }, 120_000);
  const a = await join("a");
  const b = await join("b");
  t.ok((await a.waitForParameters()).initialize, "a initialises");
  await a.initParameters(initialParameters());
  // Both stay alive meanwhile (LEASE_MS is 10 s): heartbeats go on the connection the push waits on.
  const beat = setInterval(() => {
    for (const w of [a, b]) w.heartbeat().catch(() => {});
  }, 250);
  t.teardown(() => clearInterval(beat));

  const first = a.push(gradient(1), 0, { exampleCount: 1 });
  // Over both idle bounds, and over the 60 s after which the server used to drop the connection.
  t.equal(await settledWithin(first, 65_000), "pending", "the first push still waits for the second worker after 65 s");
  const second = await b.push(gradient(3), 0, { exampleCount: 1 });
  const r = await within(first, "the first push to complete");
  t.same([r.version, r.contributors, second.contributors], [1, 2, 2], "both pushes answered with the step of 2 contributors");
});

t.test("a connection with no open stream for CONNECTION_IDLE_TIMEOUT_MS is closed, whatever it sent", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", CONNECTION_IDLE_TIMEOUT_MS: "300" });

  // A worker's connection (shared by the Connect stubs and its hand-framed pulls and pushes) goes when idle,
  // and its next calls open new ones.
  const [w] = await workersWithParameters(ts, 1);
  await w!.pull();
  await until(() => ts.server.limits.connections === 0, "the worker's idle connections closed");
  await w!.heartbeat();
  t.equal((await w!.pull()).version, 0, "after its idle connections were closed, the worker calls again");
  await until(() => ts.server.limits.connections === 0, "the worker's idle connections closed again");

  const quiet = h2(t, ts);
  const [code] = (await within(once(quiet, "goaway"), "GOAWAY on an HTTP/2 connection that opened no stream")) as [number];
  t.equal(code, NGHTTP2_NO_ERROR, "an HTTP/2 connection with no stream gets GOAWAY(NO_ERROR)");
  await within(once(quiet, "close"), "the connection closed");

  const used = h2(t, ts);
  const call = used.request({ ":method": "POST", ":path": "/no.such.Service/Method", "content-type": "application/grpc" });
  call.resume();
  call.end();
  t.equal(await within(closeCode(call), "a call"), NGHTTP2_NO_ERROR, "a call on it completes");
  await within(once(used, "goaway"), "GOAWAY once the connection's last stream is over");
  t.pass("idle again after a call: closed too");

  const silent = net.connect(port(ts), "127.0.0.1");
  silent.on("error", () => {});
  silent.resume();
  t.teardown(() => silent.destroy());
  await within(once(silent, "close"), "a TCP connection that sends nothing to be closed");
  t.pass("a TCP connection that never sent the HTTP/2 preface is closed");

  // One that never ends its own side is destroyed by the server.
  const stubborn = net.connect({ port: port(ts), host: "127.0.0.1", allowHalfOpen: true });
  stubborn.on("error", () => {});
  stubborn.resume();
  t.teardown(() => stubborn.destroy());
  await within(once(stubborn, "end"), "the server to end its side");
  await until(() => ts.server.limits.connections === 0, "no connection left on the server");
  t.pass("the server let go of a connection whose peer never closed its side");
});

t.test("with TLS, a TCP connection that never starts its handshake is closed after CONNECTION_IDLE_TIMEOUT_MS", async (t) => {
  const { cert, key } = selfSignedCertificate(t);
  const ts = await startTestServer(t, { TLS_CERT_FILE: cert, TLS_KEY_FILE: key, CONNECTION_IDLE_TIMEOUT_MS: "300" });
  const silent = net.connect(port(ts), "127.0.0.1");
  silent.on("error", () => {});
  t.teardown(() => silent.destroy());
  await within(once(silent, "close"), "a silent TCP connection to the TLS port to be closed");
  t.pass("closed");
});

t.test("MAX_CONNECTIONS: the next connection is refused at accept while that many are open", async (t) => {
  const ts = await startTestServer(t, { MAX_CONNECTIONS: "3" });
  const open: http2.ClientHttp2Session[] = [];
  for (let i = 0; i < 3; i++) {
    const c = h2(t, ts);
    await within(once(c, "remoteSettings"), `connection ${i + 1} accepted`);
    open.push(c);
  }
  for (let i = 0; i < 2; i++) {
    const extra = net.connect(port(ts), "127.0.0.1");
    extra.on("error", () => {});
    t.teardown(() => extra.destroy());
    let received = 0;
    extra.on("data", (b: Buffer) => (received += b.length));
    await within(once(extra, "close"), "the extra connection to be closed");
    t.equal(received, 0, `extra connection ${i + 1}: closed without a byte of HTTP/2 (not even SETTINGS)`);
  }
  t.equal(ts.server.limits.connections, 3, "the server still holds the 3");
  t.equal(warnings(ts, /MAX_CONNECTIONS/).length, 1, "two refusals, one warning");

  open[0]!.destroy();
  await until(() => ts.server.limits.connections === 2, "one connection gone");
  await within(once(h2(t, ts), "remoteSettings"), "a new connection to be accepted");
  t.pass("once one closed, a new connection is accepted");
});

for (const model of ["small", "large"] as const) {
  t.test(`a pull whose client does not read the answer (${model} model) is reset after STREAM_IDLE_TIMEOUT_MS and releases its snapshot`, async (t) => {
    // Small: the whole answer fits in the stream's write buffer, so the handler is done writing;
    // large: it waits for the client to take the next chunk.
    const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", STREAM_IDLE_TIMEOUT_MS: "300", MAX_CHUNK_BYTES: "65536" });
    let w: WorkerConnection;
    if (model === "small") [w] = (await workersWithParameters(ts, 1)) as [WorkerConnection];
    else {
      w = await ts.register("w");
      await w.waitForParameters();
      await w.initParameters([{ name: "w", shape: [1 << 19], data: new Float32Array(1 << 19).fill(0.5) }]);
    }
    // A client that lets the server send nothing of any answer.
    const reader = h2(t, ts, { settings: { initialWindowSize: 0 } });
    const request = envelope(toBinary(PullParametersRequestSchema, create(PullParametersRequestSchema, { session: w.session })));
    for (const [handler, contentType] of [
      ["fast-pull.ts", "application/grpc"],
      ["Connect handler", "application/grpc-web+proto"],
    ] as const) {
      const pull = reader.request({ ":method": "POST", ":path": PULL_PATH, "content-type": contentType, te: "trailers" });
      pull.end(request);
      const [headers] = (await within(once(pull, "response"), "the answer's headers")) as [http2.IncomingHttpHeaders];
      t.equal(headers[":status"], 200, `${handler}: the server answers`);
      t.equal(await within(closeCode(pull), "the unread pull reset"), NGHTTP2_CANCEL, `${handler}: the unread answer is reset with CANCEL`);
    }
    await until(() => ts.server.limits.streams === 0, "no stream open");
    // The store writes an update in place only when no pull holds a snapshot of the current version.
    const store = ts.server.run.store;
    const before = store.acquire();
    const buffers = before.tensors;
    before.release();
    store.update(() => {});
    const after = store.acquire();
    t.equal(after.tensors, buffers, "no snapshot is held any more: the update was written in place");
    after.release();
  });
}
