/**
 * The server as an independent gRPC implementation sees it: Google's @grpc/grpc-js with its default
 * options (4 MiB receive limit, its own HTTP/2 settings), against a real server on loopback, with a
 * model large enough that a pull is several maximum-size messages.
 *
 * Every RPC of the service; pulls within the default message limit and within a smaller one the
 * client asks for; the chunk limit the server announces is the one it enforces; a storm of pulls
 * cancelled at random points leaves the connection usable; metadata over the announced limit is
 * refused call by call; unknown methods, compression, status messages, bearer tokens, health and
 * reflection as gRPC defines them; and Buf's own client (buf curl, Go) finding the methods by
 * reflection.
 */
import t from "tap";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import http2 from "node:http2";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Health, HealthCheckResponse_ServingStatus } from "@distributed-ps/common/gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "@distributed-ps/common/gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionAlpha } from "@distributed-ps/common/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { Dtype, ParameterServerService, type WorkerSession } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { MESSAGE_RESERVE_BYTES } from "@distributed-ps/common/tensor-stream/chunk-tensors.ts";
import { startTestServer } from "../helpers/test-server.ts";
import { waitUntil } from "../helpers/wait.ts";

const ps = ParameterServerService.method;
/** 3M float32 values: 12 MB, two full chunks and a part at the default chunk size. */
const ELEMENTS = 3_000_000;
const FOUR_MIB = 4 << 20;

const path = (m: DescMethod) => `/${m.parent.typeName}/${m.name}`;
const serialize = (d: DescMessage) => (value: never) => Buffer.from(toBinary(d, value));
const deserialize = (d: DescMessage) => (bytes: Buffer) => fromBinary(d, bytes);

/** A grpc-js client for any of the server's services, typed by the generated descriptors. */
class Client {
  readonly raw: grpc.Client;
  readonly metadata: () => grpc.Metadata;
  constructor(address: string, options: grpc.ChannelOptions = {}, metadata: Record<string, string> = {}) {
    this.raw = new grpc.Client(address, grpc.credentials.createInsecure(), options);
    this.metadata = () => {
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries(metadata)) md.set(k, v);
      return md;
    };
  }

  unary<M extends DescMethod & { methodKind: "unary" }>(m: M, req: MessageInitShape<M["input"]>, md = this.metadata(), options: grpc.CallOptions = {}): Promise<any> {
    return new Promise((resolve, reject) =>
      this.raw.makeUnaryRequest(path(m), serialize(m.input), deserialize(m.output), create(m.input, req) as never, md, options, (err, value) => (err ? reject(err) : resolve(value))),
    );
  }

  /** A server stream's messages, or the error that ended it with the messages before it. */
  serverStream<M extends DescMethod & { methodKind: "server_streaming" }>(
    m: M,
    req: MessageInitShape<M["input"]>,
    o: { cancelAfter?: number; options?: grpc.CallOptions } = {},
  ): Promise<{ messages: any[]; error?: grpc.ServiceError }> {
    return new Promise((resolve) => {
      const call = this.raw.makeServerStreamRequest(path(m), serialize(m.input), deserialize(m.output), create(m.input, req) as never, this.metadata(), o.options ?? {});
      const messages: any[] = [];
      call.on("data", (message) => {
        messages.push(message);
        if (o.cancelAfter !== undefined && messages.length >= o.cancelAfter) call.cancel();
      });
      call.on("error", (error: grpc.ServiceError) => resolve({ messages, error }));
      call.on("end", () => resolve({ messages }));
    });
  }

  clientStream<M extends DescMethod & { methodKind: "client_streaming" }>(m: M, requests: MessageInitShape<M["input"]>[]): Promise<any> {
    return new Promise((resolve, reject) => {
      const call = this.raw.makeClientStreamRequest(path(m), serialize(m.input), deserialize(m.output), this.metadata(), {}, (err, value) => (err ? reject(err) : resolve(value)));
      for (const r of requests) call.write(create(m.input, r) as never);
      call.end();
    });
  }

  bidiStream<M extends DescMethod & { methodKind: "bidi_streaming" }>(m: M, requests: MessageInitShape<M["input"]>[]): Promise<any[]> {
    return new Promise((resolve, reject) => {
      const call = this.raw.makeBidiStreamRequest(path(m), serialize(m.input), deserialize(m.output), this.metadata(), {});
      const out: any[] = [];
      call.on("data", (message) => out.push(message));
      call.on("error", reject);
      call.on("end", () => resolve(out));
      for (const r of requests) call.write(create(m.input, r) as never);
      call.end();
    });
  }

  close(): void {
    this.raw.close();
  }
}

function float32Bytes(n: number, value: number): Uint8Array {
  return new Uint8Array(new Float32Array(n).fill(value).buffer);
}

/** One gRPC message in its 5-byte envelope. */
function envelope(message: Uint8Array, flags = 0): Buffer {
  const prefix = Buffer.from([flags, 0, 0, 0, 0]);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, Buffer.from(message)]);
}

/**
 * A call over raw HTTP/2 (node:http2), for what grpc-js would not let a test see: a client that does
 * not cancel at its own deadline, bodies no client library would send. Resolves with the server's
 * grpc-status (or "none"), its grpc-message decoded, and how long the call took.
 */
function rawCall(h2: http2.ClientHttp2Session, path: string, body: Buffer | Buffer[], headers: Record<string, string> = {}): Promise<{ status: string; message: string; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const stream = h2.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
    let status = "none";
    let message = "";
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] === undefined) return;
      status = String(h["grpc-status"]);
      message = decodeURIComponent(String(h["grpc-message"] ?? ""));
    };
    stream.on("response", take);
    stream.on("trailers", take);
    stream.on("data", () => {});
    stream.on("close", () => resolve({ status, message, ms: Date.now() - started }));
    for (const part of Array.isArray(body) ? body : [body]) stream.write(part);
    stream.end();
  });
}

/** Registers, initialises the 3M-value model "w" in 1 MiB chunks, and returns the session. */
async function joinAndInitialise(client: Client): Promise<{ session: WorkerSession; maxChunkBytes: number }> {
  const registered = await client.unary(ps.register, { workerLabel: "grpc-js" });
  const session = registered.session as WorkerSession;
  const wait = await client.unary(ps.waitForParameters, { session });
  if (wait.initialize) {
    const data = float32Bytes(ELEMENTS, 0.5);
    const chunks: MessageInitShape<typeof ps.initParameters.input>[] = [{ message: { case: "header", value: { session, tensorCount: 1 } } }];
    for (let offset = 0; offset < data.length; offset += 1 << 20) {
      chunks.push({ message: { case: "chunk", value: { name: "w", shape: offset === 0 ? [ELEMENTS] : [], byteOffset: BigInt(offset), dtype: Dtype.FLOAT32, data: data.subarray(offset, offset + (1 << 20)) } } });
    }
    await client.clientStream(ps.initParameters, chunks);
  }
  return { session, maxChunkBytes: registered.config.maxChunkBytes as number };
}

t.test("every RPC with grpc-js's default options; pulls fit its 4 MiB limit, or a smaller one asked for", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", SERVER_MODE: "sync" });
  const client = new Client(ts.address);
  t.teardown(() => client.close());
  const { session, maxChunkBytes } = await joinAndInitialise(client);
  t.ok(maxChunkBytes + MESSAGE_RESERVE_BYTES <= FOUR_MIB, `the announced chunk size (${maxChunkBytes}) leaves a message within 4 MiB`);

  for (const dtype of [Dtype.FLOAT32, Dtype.FLOAT16, Dtype.BFLOAT16]) {
    const pull = await client.serverStream(ps.pullParameters, { session, dtype });
    t.equal(pull.error, undefined, `${Dtype[dtype]} pull: no error (${pull.error?.details ?? ""})`);
    const bytes = pull.messages.slice(1).reduce((n, m) => n + m.message.value.data.length, 0);
    t.equal(bytes, ELEMENTS * (dtype === Dtype.FLOAT32 ? 4 : 2), `${Dtype[dtype]} pull: every value arrives`);
  }

  // A client with a 1 MiB receive limit says so, and every message fits it.
  const small = new Client(ts.address, { "grpc.max_receive_message_length": 1 << 20 });
  t.teardown(() => small.close());
  const refused = await small.serverStream(ps.pullParameters, { session });
  t.equal(refused.error?.code, grpc.status.RESOURCE_EXHAUSTED, "without asking, its limit is exceeded (the control)");
  const asked = await small.serverStream(ps.pullParameters, { session, maxMessageBytes: 1 << 20 });
  t.equal(asked.error, undefined, `with max_message_bytes it pulls (${asked.error?.details ?? ""})`);
  t.equal(asked.messages.slice(1).reduce((n, m) => n + m.message.value.data.length, 0), ELEMENTS * 4, "every value arrives");
  const tooSmall = await client.serverStream(ps.pullParameters, { session, maxMessageBytes: 1000 });
  t.equal(tooSmall.error?.code, grpc.status.INVALID_ARGUMENT, "an unusable max_message_bytes is refused");
  t.match(tooSmall.error?.details, /max_message_bytes 1000 is too small/);

  const heartbeat = await client.unary(ps.heartbeat, { session });
  t.ok(heartbeat.leaseMs > 0, "Heartbeat");
  const status = await client.unary(ps.getStatus, {});
  t.equal(status.version, 0, "GetStatus");
  const assignment = await client.unary(ps.nextAssignment, { session, epochs: 1 });
  t.ok(assignment !== undefined, "NextAssignment");
  const gradient = float32Bytes(ELEMENTS, 0.25);
  const push = await client.clientStream(ps.pushGradients, [
    { message: { case: "header", value: { session, tensorCount: 1, baseVersion: 0, exampleCount: 1 } } },
    ...[0, 1, 2, 3].map((k) => ({
      message: { case: "chunk" as const, value: { name: "w", shape: k === 0 ? [ELEMENTS] : [], byteOffset: BigInt(k * 3_000_000), dtype: Dtype.FLOAT32, data: gradient.subarray(k * 3_000_000, (k + 1) * 3_000_000) } },
    })),
  ]);
  t.equal(push.version, 1, "PushGradients: the step is applied");
  await client.unary(ps.reportMetrics, { session, metrics: { epoch: 0, trainLoss: 1 } });
  t.pass("ReportMetrics");
  const finished = await client.unary(ps.finish, { session });
  t.equal(typeof finished.runComplete, "boolean", "Finish");
});

t.test("the announced chunk size is the enforced one", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", MAX_CHUNK_BYTES: String(1 << 20) });
  const client = new Client(ts.address);
  t.teardown(() => client.close());
  const { session, maxChunkBytes } = await joinAndInitialise(client);
  t.equal(maxChunkBytes, 1 << 20);
  const push = (bytes: number) =>
    client.clientStream(ps.pushGradients, [
      { message: { case: "header", value: { session, tensorCount: 1, baseVersion: 0, exampleCount: 1 } } },
      { message: { case: "chunk", value: { name: "w", shape: [ELEMENTS], byteOffset: 0n, dtype: Dtype.FLOAT32, data: new Uint8Array(bytes) } } },
    ]).then(() => undefined, (e: grpc.ServiceError) => e);
  const over = await push(maxChunkBytes + 4);
  t.equal(over?.code, grpc.status.INVALID_ARGUMENT, "a chunk 4 bytes over max_chunk_bytes is refused");
  t.match(over?.details, /carries 1048580 bytes, more than max_chunk_bytes \(1048576\)/, `saying why: ${over?.details}`);
  const at = await push(maxChunkBytes);
  t.notMatch(at?.details ?? "", /max_chunk_bytes/, "a chunk of exactly max_chunk_bytes is not refused for its size");
});

t.test("100 pulls cancelled at random points on one connection leave it usable", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1" });
  const client = new Client(ts.address);
  t.teardown(() => client.close());
  const { session } = await joinAndInitialise(client);
  let seed = 12345;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  let cancelled = 0;
  for (let i = 0; i < 100; i++) {
    // After the header, or after 1..3 chunks (3 is the whole pull: then it may end normally).
    const r = await client.serverStream(ps.pullParameters, { session }, { cancelAfter: 1 + Math.floor(random() * 4) });
    if (r.error?.code === grpc.status.CANCELLED) cancelled++;
    else if (r.error !== undefined) t.fail(`pull ${i}: ${r.error.code} ${r.error.details}`);
  }
  t.ok(cancelled >= 70, `most pulls were cancelled mid-way (${cancelled})`);
  const after = await client.serverStream(ps.pullParameters, { session });
  t.equal(after.error, undefined, `a full pull afterwards (${after.error?.details ?? "ok"})`);
  t.equal(after.messages.length, 4, "header and three chunks");
  t.ok(await client.unary(ps.heartbeat, { session }), "and a unary call");
  t.equal(ts.server.limits.connections, 1, "all on the one connection");
});

t.test("metadata over SETTINGS_MAX_HEADER_LIST_SIZE: that call is refused, the connection and a pull in flight on it carry on", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", WAIT_TIMEOUT_MS: "1500" });
  const client = new Client(ts.address);
  t.teardown(() => client.close());
  const { session } = await joinAndInitialise(client);
  // Waits for a version that will not come, so it is open while the big calls go by.
  const inFlight = client.serverStream(ps.pullParameters, { session, minVersion: 1 });
  await waitUntil(() => ts.server.limits.streams === 1, "the pull's stream open on the server");
  for (const [what, values] of [
    ["one 70 KB value", [70_000]],
    ["four values, 70 KB in all", [20_000, 20_000, 20_000, 10_000]],
    ["100 KB of random text", [25_000, 25_000, 25_000, 25_000]],
  ] as const) {
    const md = new grpc.Metadata();
    values.forEach((n, i) => md.set(`x-big-${i}`, what.includes("random") ? randomBytes(n).toString("base64").slice(0, n) : "a".repeat(n)));
    const err = await client.unary(ps.heartbeat, { session }, md).then(() => undefined, (e: grpc.ServiceError) => e);
    t.equal(err?.code, grpc.status.RESOURCE_EXHAUSTED, `${what}: RESOURCE_EXHAUSTED (${err?.details})`);
    t.ok(await client.unary(ps.heartbeat, { session }), `${what}: the next call on the connection is answered`);
  }
  const pulled = await inFlight;
  t.equal(pulled.error, undefined, `the pull in flight completed (${pulled.error?.details ?? "ok"})`);
  t.equal(pulled.messages.length, 4, "header and three chunks");
  t.equal(ts.server.limits.connections, 1, "all on the one connection");
});

t.test("unknown methods, compression, status messages: the gRPC way", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1" });
  const client = new Client(ts.address);
  t.teardown(() => client.close());
  const unknown = await new Promise<grpc.ServiceError>((resolve) =>
    client.raw.makeUnaryRequest("/paramserver.v1.ParameterServerService/NoSuchMethod", (v: Buffer) => v, (v: Buffer) => v, Buffer.alloc(0), (err) => resolve(err!)),
  );
  t.equal(unknown.code, grpc.status.UNIMPLEMENTED, "an unknown method: UNIMPLEMENTED");
  t.match(unknown.details, /unknown method \/paramserver\.v1\.ParameterServerService\/NoSuchMethod/);

  const gzip = new Client(ts.address, { "grpc.default_compression_algorithm": 2 });
  t.teardown(() => gzip.close());
  const first = await gzip.unary(ps.getStatus, {}).then(() => undefined, (e: grpc.ServiceError) => e);
  t.equal(first?.code, grpc.status.UNIMPLEMENTED, "a gzip-compressed request: UNIMPLEMENTED, as the gRPC compression spec says");
  t.match(first?.details, /unknown compression "gzip"/, `saying why: ${first?.details}`);
  // grpc-js keeps grpc-accept-encoding to itself (no metadata shows it): what it did with it shows.
  const second = await gzip.unary(ps.getStatus, {}).then(() => "ok", (e: grpc.ServiceError) => `${e.code} ${e.details}`);
  t.equal(second, "ok", "told the server takes identity only, the client sends its next call uncompressed and is answered");

  const refused = await client.unary(ps.heartbeat, { session: { slot: 7, token: "nope" } }).then(() => undefined, (e: grpc.ServiceError) => e);
  t.ok(refused !== undefined, "a bad session is refused");
  t.notMatch(refused?.details ?? "", /%[0-9A-F]{2}/, `the status message arrives as text, not percent-escaped: ${refused?.details}`);
});

t.test("bearer tokens: the scheme in any case, and only the right token", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", AUTH_TOKEN: "s3cret-s3cret-s3cret" });
  for (const [header, ok] of [["Bearer s3cret-s3cret-s3cret", true], ["bearer s3cret-s3cret-s3cret", true], ["BEARER s3cret-s3cret-s3cret", true], ["Bearer wrong", false], ["Basic s3cret-s3cret-s3cret", false]] as const) {
    const client = new Client(ts.address, {}, { authorization: header });
    const r = await client.unary(ps.getStatus, {}).then(() => "ok", (e: grpc.ServiceError) => e.code);
    t.equal(r, ok ? "ok" : grpc.status.UNAUTHENTICATED, `authorization: ${header}`);
    client.close();
  }
});

t.test("health and reflection on the gRPC port", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1" });
  const client = new Client(ts.address);
  t.teardown(() => client.close());
  for (const service of ["", ParameterServerService.typeName]) {
    const r = await client.unary(Health.method.check, { service });
    t.equal(r.status, HealthCheckResponse_ServingStatus.SERVING, `Check("${service}"): SERVING`);
  }
  const unknown = await client.unary(Health.method.check, { service: "nope" }).then(() => undefined, (e: grpc.ServiceError) => e);
  t.equal(unknown?.code, grpc.status.NOT_FOUND, "an unknown service: NOT_FOUND");
  const list = await client.unary(Health.method.list, {});
  t.same(Object.keys(list.statuses).sort(), ["", ParameterServerService.typeName]);

  for (const reflection of [ServerReflection, ServerReflectionAlpha]) {
    const [services, byMethod, byFile, missing] = await client.bidiStream(reflection.method.serverReflectionInfo, [
      { messageRequest: { case: "listServices", value: "" } },
      { messageRequest: { case: "fileContainingSymbol", value: `${ParameterServerService.typeName}.PullParameters` } },
      { messageRequest: { case: "fileByFilename", value: "grpc/health/v1/health.proto" } },
      { messageRequest: { case: "fileContainingSymbol", value: "no.such.Thing" } },
    ]);
    const names = services.messageResponse.value.service.map((s: { name: string }) => s.name);
    t.ok(names.includes(ParameterServerService.typeName) && names.includes("grpc.health.v1.Health"), `${reflection.typeName}: lists the services (${names.join(", ")})`);
    const files = byMethod.messageResponse.value.fileDescriptorProto.map((b: Uint8Array) => fromBinary(FileDescriptorProtoSchema, b));
    t.equal(files[0].name, "paramserver/v1/parameter_server.proto", "a method's file first");
    t.ok(files[0].service.some((s: { name: string }) => s.name === "ParameterServerService"), "holding the service");
    t.equal(fromBinary(FileDescriptorProtoSchema, byFile.messageResponse.value.fileDescriptorProto[0]).package, "grpc.health.v1", "a file by name");
    t.equal(missing.messageResponse.case, "errorResponse", "an unknown symbol: an error response");
    t.equal(missing.messageResponse.value.errorCode, grpc.status.NOT_FOUND);
  }
});

t.test("a deadline is honoured by the server itself, and a malformed one refused, on the hand-framed pull", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1" });
  const client = new Client(ts.address);
  t.teardown(() => client.close());
  const { session } = await joinAndInitialise(client);
  // Raw HTTP/2, so that the client does not cancel at its deadline: the server must end the call.
  const h2 = http2.connect(`http://${ts.address}`);
  t.teardown(() => h2.close());
  const request = envelope(toBinary(ps.pullParameters.input, create(ps.pullParameters.input, { session, minVersion: 1000 })));
  const call = (timeout: string) => rawCall(h2, path(ps.pullParameters), request, { "grpc-timeout": timeout });
  const expired = await call("300m");
  t.equal(expired.status, String(grpc.status.DEADLINE_EXCEEDED), `a pull waiting for version 1000 ends with DEADLINE_EXCEEDED (${expired.message})`);
  t.ok(expired.ms >= 250 && expired.ms < 5000, `at its deadline (${expired.ms} ms)`);
  const malformed = await call("soon");
  t.equal(malformed.status, String(grpc.status.INVALID_ARGUMENT), `a malformed grpc-timeout: INVALID_ARGUMENT (${malformed.message})`);
});

t.test("buf curl (Buf's Go gRPC client) lists and calls the methods through reflection alone", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1" });
  const buf = fileURLToPath(new URL("../../node_modules/.bin/buf", import.meta.url));
  const run = (...args: string[]) => new Promise<string>((resolve) => execFile(buf, ["curl", "--http2-prior-knowledge", ...args], { timeout: 30_000 }, (_e, stdout, stderr) => resolve(stdout + stderr)));
  const methods = await run("--list-methods", `http://${ts.address}`);
  t.match(methods, /paramserver\.v1\.ParameterServerService\/PullParameters/, "the service's methods listed");
  t.match(methods, /grpc\.health\.v1\.Health\/Check/, "and health's");
  const status = await run("--protocol", "grpc", `http://${ts.address}/paramserver.v1.ParameterServerService/GetStatus`);
  t.match(status, /"maxChunkBytes": \d+/, "a call made from the reflected schema");
});

t.test("a bad request body gets the same status on the hand-framed pull as on Connect's handler", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1" });
  const h2 = http2.connect(`http://${ts.address}`);
  t.teardown(() => h2.close());
  const status = async (path: string, body: Buffer) => (await rawCall(h2, path, body)).status;
  const cases: [string, Buffer][] = [
    ["an empty body", Buffer.alloc(0)],
    ["a message that is not protobuf", envelope(new Uint8Array([0x0a, 0xff]))],
    ["the compressed flag without an encoding", envelope(new Uint8Array(), 1)],
    ["an envelope cut short", Buffer.from([0, 0, 0, 0, 9, 1])],
  ];
  // Health/Watch is server-streaming too and served by Connect: the reference.
  for (const [what, body] of cases) {
    const reference = await status(path(Health.method.watch), body);
    t.not(reference, "0", `${what}: Connect refuses it (${reference})`);
    t.equal(await status(path(ps.pullParameters), body), reference, `${what}: the pull answers the same status`);
  }
});

t.test("a push whose deadline passes at the sync barrier ends DEADLINE_EXCEEDED, and its gradient still counts", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync", LEARNING_RATE: "1" });
  const client = new Client(ts.address);
  t.teardown(() => client.close());
  const a = await joinAndInitialise(client);
  const b = (await client.unary(ps.register, { workerLabel: "b" })).session as WorkerSession;
  /** A push of `value` everywhere: the header, then three chunks of 4,000,000 bytes. */
  const frames = (session: WorkerSession, value: number) => {
    const data = float32Bytes(ELEMENTS, value);
    const messages: MessageInitShape<typeof ps.pushGradients.input>[] = [{ message: { case: "header", value: { session, tensorCount: 1, baseVersion: 0, exampleCount: 1 } } }];
    for (let offset = 0; offset < data.length; offset += 4_000_000) {
      messages.push({ message: { case: "chunk", value: { name: "w", shape: offset === 0 ? [ELEMENTS] : [], byteOffset: BigInt(offset), dtype: Dtype.FLOAT32, data: data.subarray(offset, offset + 4_000_000) } } });
    }
    return messages.map((m) => envelope(toBinary(ps.pushGradients.input, create(ps.pushGradients.input, m))));
  };
  // Raw HTTP/2, so that the client does not cancel at its deadline: the status is the server's.
  const h2 = http2.connect(`http://${ts.address}`);
  t.teardown(() => h2.close());
  const push = async (session: WorkerSession, value: number, timeout?: string) => {
    const r = await rawCall(h2, path(ps.pushGradients), frames(session, value), timeout === undefined ? {} : { "grpc-timeout": timeout });
    return `${r.status} ${r.message}`;
  };
  const expired = await push(a.session, 1, "500m");
  t.match(expired, /^4 .*the gradient still counts/, `worker a waited alone past its deadline: ${expired}`);
  const again = await push(a.session, 1);
  t.match(again, /^6 /, `a's second push for the step: ALREADY_EXISTS (${again})`);
  t.match(await push(b, 3), /^0 /, "b's push completes the step");
  const pulled = await client.serverStream(ps.pullParameters, { session: a.session });
  const first = new Float32Array(new Uint8Array(pulled.messages[1].message.value.data).slice(0, 4).buffer)[0];
  t.equal(first, 0.5 - (1 + 3) / 2, "the applied step averaged both gradients: a's counted");
});
