/**
 * The server's interceptors apply to every RPC by construction: the generated Connect routes and
 * the two bulk streams whose bodies are read and written by hand (wire/hand-framed-call.ts) go
 * through the same list, so an interceptor (the call log, authentication, one a caller adds) sees
 * each call with its headers and its outcome, can add response headers and trailers, and its
 * refusal stops any call before it does anything.
 */
import http2 from "node:http2";
import t from "tap";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { Dtype, PullParametersRequestSchema } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { envelopePrefix } from "@distributed-ps/common/wire/grpc-framing.ts";
import { gradient, startTestServer, values, workersWithParameters } from "../helpers/test-server.ts";

t.test("LOG_LEVEL=debug: the call log (an interceptor) has every call, the hand-framed pull and push included, with its outcome", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", SERVER_MODE: "async", LEARNING_RATE: "1", LOG_LEVEL: "debug" });
  const [w] = await workersWithParameters(ts, 1);
  await w!.push(gradient(1), 0, { exampleCount: 1 }); // hand-framed (worker/src/wire/fast-push.ts)
  t.same(values((await w!.pull()).tensors).w, [0, 1, 2, 3], "pulled (hand-framed) after the push");
  const wrongShape = [{ name: "w", shape: [4], data: new Float32Array(4) }, gradient(1)[1]!];
  await t.rejects(w!.push(wrongShape, 1, { exampleCount: 1 }), { code: Code.InvalidArgument }, "a push of the wrong shape is refused");
  const calls = ts.logs.flatMap((l) => /DEBUG \[server\] rpc (\w+ \w+)/.exec(l)?.[1] ?? []).filter((l) => !l.startsWith("Heartbeat"));
  t.same(
    calls,
    ["Register OK", "WaitForParameters OK", "InitParameters OK", "PushGradients OK", "PullParameters OK", "PushGradients InvalidArgument"],
    `every call, in order, with its outcome: ${calls.join(", ")}`,
  );
  t.match(ts.logs.find((l) => l.includes("rpc PushGradients InvalidArgument")), /has shape \[4\], the parameter has shape \[2,2\] in \d+\.\d ms/, "a refusal logged with its reason and time");
});

t.test("an interceptor's refusal stops a hand-framed call before it does anything", async (t) => {
  const refuseBulk: Interceptor = (next) => async (req) => {
    if (req.method.name === "PushGradients" || req.method.name === "PullParameters") throw new ConnectError(`${req.method.name} is closed today`, Code.PermissionDenied);
    return next(req);
  };
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", SERVER_MODE: "async", LEARNING_RATE: "1" }, { interceptors: [refuseBulk] });
  const [w] = await workersWithParameters(ts, 1);
  await t.rejects(w!.push(gradient(1), 0, { exampleCount: 1 }), { code: Code.PermissionDenied, rawMessage: "PushGradients is closed today" }, "the push is refused");
  await t.rejects(w!.pull(), { code: Code.PermissionDenied, rawMessage: "PullParameters is closed today" }, "the pull is refused");
  t.equal(ts.server.run.store.version, 0, "nothing was applied");
});

t.test("headers and trailers an interceptor sets reach the client of a hand-framed pull", async (t) => {
  const stamp: Interceptor = (next) => async (req) => {
    const res = await next(req);
    res.header.set("x-served-by", `interceptor for ${req.method.name}`);
    res.trailer.set("x-request-token", req.header.get("x-request-token") ?? "none");
    return res;
  };
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1" }, { interceptors: [stamp] });
  const [w] = await workersWithParameters(ts, 1);
  const session = http2.connect(`http://${ts.address}`);
  t.teardown(() => session.close());
  const body = toBinary(PullParametersRequestSchema, create(PullParametersRequestSchema, { session: w!.session, dtype: Dtype.FLOAT32 }));
  const stream = session.request({
    ":method": "POST",
    ":path": "/paramserver.v1.ParameterServerService/PullParameters",
    "content-type": "application/grpc",
    te: "trailers",
    "x-request-token": "abc",
  });
  const [headers, trailers] = await new Promise<[http2.IncomingHttpHeaders, http2.IncomingHttpHeaders]>((resolve, reject) => {
    let h: http2.IncomingHttpHeaders = {};
    stream.on("response", (x) => (h = x));
    stream.on("trailers", (x) => resolve([h, x]));
    stream.on("error", reject);
    stream.resume();
    stream.end(Buffer.concat([envelopePrefix(body.length), body]));
  });
  t.equal(trailers["grpc-status"], "0", "the pull succeeded");
  t.equal(headers["x-served-by"], "interceptor for PullParameters", "a response header set by the interceptor");
  t.equal(trailers["x-request-token"], "abc", "a trailer set by the interceptor, from the request's headers");
});
