/**
 * The ECS calls of the server (watching the worker service's desired count, scaling services to
 * zero at the end of a run) against a stand-in ECS endpoint: a local HTTP server speaking the ECS
 * JSON 1.1 protocol, since there is no AWS account here. The real SDK client is used, so the
 * requests are what AWS would receive.
 */
import t, { type Test } from "tap";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { ECSClient } from "@aws-sdk/client-ecs";
import type { Logger } from "@distributed-ps/common/log.ts";
import { watchWorkerServiceCount } from "../src/ecs/worker-count.ts";
import { scaleServicesToZero } from "../src/ecs/scale-down.ts";
import { waitUntil } from "../../test/helpers/wait.ts";

const TARGET = "AmazonEC2ContainerServiceV20141113";
const CLUSTER = "ps-cluster";
const SERVICE = "ps-workers";
const INTERVAL = 50;

interface Call {
  target: string | undefined;
  body: unknown;
}
type Answer = { status: number; type?: string; body: unknown } | "hold";

/**
 * The stand-in: records every call and answers with `answer(call)`. "hold" keeps the request
 * open until release() (a slow API call).
 */
async function standIn(t: Test, answer: (call: Call) => Answer) {
  const calls: Call[] = [];
  const held: (() => void)[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let text = "";
    req.on("data", (d: Buffer) => (text += d.toString()));
    req.on("end", () => {
      const call = { target: req.headers["x-amz-target"] as string | undefined, body: JSON.parse(text) as unknown };
      calls.push(call);
      const reply = (a: Exclude<Answer, "hold">) => {
        if (res.destroyed) return; // the client gave up on it (aborted)
        res.writeHead(a.status, { "content-type": a.type ?? "application/x-amz-json-1.1" });
        res.end(JSON.stringify(a.body));
      };
      const a = answer(call);
      if (a === "hold") held.push(() => reply(describeAnswer(0)));
      else reply(a);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const client = new ECSClient({
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    region: "us-east-1",
    credentials: { accessKeyId: "x", secretAccessKey: "y" },
    // One attempt: the SDK's own retries (with backoff up to seconds) would hide the error
    // answers from the code under test and slow the test down.
    maxAttempts: 1,
  });
  t.teardown(() => {
    client.destroy();
    server.closeAllConnections();
    server.close();
  });
  return { calls, client, held };
}

const describeAnswer = (desiredCount: number): Exclude<Answer, "hold"> => ({
  status: 200,
  body: { services: [{ serviceName: SERVICE, status: "ACTIVE", desiredCount, runningCount: desiredCount }], failures: [] },
});

/** A logger that keeps what it is given. */
function capturingLogger() {
  const lines: { level: keyof Logger; message: string }[] = [];
  const log: Logger = {
    debug: (message) => lines.push({ level: "debug", message }),
    info: (message) => lines.push({ level: "info", message }),
    warn: (message) => lines.push({ level: "warn", message }),
    error: (message) => lines.push({ level: "error", message }),
  };
  return { log, lines, warnings: () => lines.filter((l) => l.level === "warn").map((l) => l.message) };
}

t.test("the watch reports the desired count, its changes, and rides out errors", async (t) => {
  let mode: "ok" | "throttle" | "server-error" | "missing" | "hold" = "ok";
  let desired = 4;
  const { calls, client, held } = await standIn(t, () => {
    switch (mode) {
      case "ok":
        return describeAnswer(desired);
      case "throttle":
        return { status: 400, body: { __type: "ThrottlingException", message: "Rate exceeded" } };
      case "server-error":
        return { status: 500, body: { __type: "ServerException", message: "Service unavailable" } };
      case "missing":
        return { status: 200, body: { services: [], failures: [{ arn: `arn:aws:ecs:us-east-1:1:service/${CLUSTER}/${SERVICE}`, reason: "MISSING" }] } };
      case "hold":
        return "hold";
    }
  });
  const { log, lines, warnings } = capturingLogger();
  const counts: number[] = [];
  const watch = watchWorkerServiceCount({ cluster: CLUSTER, service: SERVICE, intervalMs: INTERVAL, log, client, onCount: (n) => counts.push(n) });
  t.teardown(() => watch.stop());
  /** Waits for `n` more requests, i.e. polls that saw the current answer. */
  const polls = (n: number) => {
    const target = calls.length + n;
    return waitUntil(() => calls.length >= target, `${n} more polls`);
  };

  await waitUntil(() => counts.length === 1, "the first count");
  t.same(counts, [4], "the first value read is reported");
  t.equal(calls[0]?.target, `${TARGET}.DescribeServices`, "DescribeServices is called");
  t.same(calls[0]?.body, { cluster: CLUSTER, services: [SERVICE] }, "for the right cluster and service");

  await polls(3);
  t.same(counts, [4], "no report while the count is unchanged");

  desired = 6;
  await waitUntil(() => counts.length === 2, "the change to 6");
  desired = 2;
  await waitUntil(() => counts.length === 3, "the change to 2");
  t.same(counts, [4, 6, 2], "every change is reported once, in order");

  mode = "throttle";
  await waitUntil(() => warnings().length === 1, "the throttling warning");
  t.match(warnings()[0], /ThrottlingException.*Rate exceeded/, "the warning says what failed");
  t.match(warnings()[0], `aws ecs describe-services --cluster ${CLUSTER} --services ${SERVICE}`, "and how to check by hand");
  await polls(3);
  t.equal(warnings().length, 1, "a persisting error is logged once");

  mode = "server-error";
  await waitUntil(() => warnings().length === 2, "the server error warning");
  t.match(warnings()[1], /HTTP 500/, "a different error is logged again");

  desired = 3; // changed while the API failed: picked up on recovery
  mode = "ok";
  await waitUntil(() => counts.length === 4, "the count after recovery");
  t.same(counts, [4, 6, 2, 3], "polling recovers and reports the count");
  t.ok(lines.some((l) => l.level === "info" && /works again/.test(l.message)), "the recovery is logged");

  mode = "missing";
  await waitUntil(() => warnings().length === 3, "the missing-service warning");
  t.match(warnings()[2], /MISSING/, "a failures entry (service missing) is a warning");
  mode = "ok";
  await polls(2);
  t.same(counts, [4, 6, 2, 3], "after recovery with the same count, nothing is reported");
  t.equal(warnings().length, 3, "no further warnings");
  t.notOk(lines.some((l) => l.level === "error"), "nothing logged as an error");

  // A slow call: no second request is made while it is open, however many intervals pass.
  mode = "hold";
  desired = 7;
  await waitUntil(() => held.length === 1, "a held request");
  const before = calls.length;
  // The next poll is scheduled only once this one has ended: nothing can start another meanwhile.
  t.notOk(watch.scheduled, "no poll is scheduled while a call is in flight");
  t.equal(calls.length, before, "and none was made");

  // stop() during that call: it is aborted, its answer is not reported, and nothing is left to run.
  await watch.stop();
  mode = "ok";
  held.shift()?.();
  t.notOk(watch.scheduled, "no poll scheduled after stop()");
  t.equal(calls.length, before, "no requests after stop()");
  t.same(counts, [4, 6, 2, 3], "no report after stop()");
  t.equal(warnings().length, 3, "the aborted call is not a warning");
});

t.test("scaleServicesToZero sets each service's desired count to 0, in order", async (t) => {
  const { calls, client } = await standIn(t, (call) => {
    const { service } = call.body as { service: string };
    return { status: 200, body: { service: { serviceName: service, desiredCount: 0 } } };
  });
  const { log, lines } = capturingLogger();
  await scaleServicesToZero({ cluster: CLUSTER, services: ["ps-workers", "ps-server"] }, log, client);
  t.same(calls.map((c) => c.target), [`${TARGET}.UpdateService`, `${TARGET}.UpdateService`], "UpdateService is called per service");
  t.same(
    calls.map((c) => c.body),
    [
      { cluster: CLUSTER, service: "ps-workers", desiredCount: 0 },
      { cluster: CLUSTER, service: "ps-server", desiredCount: 0 },
    ],
    "workers first, then the server, each to 0",
  );
  t.equal(lines.filter((l) => l.level === "info").length, 2, "each scale-down is logged");
});

t.test("scaleServicesToZero rejects when ECS refuses", async (t) => {
  const { client } = await standIn(t, () => ({
    status: 400,
    body: { __type: "AccessDeniedException", message: "not authorized to perform: ecs:UpdateService" },
  }));
  const { log } = capturingLogger();
  await t.rejects(scaleServicesToZero({ cluster: CLUSTER, services: ["ps-workers"] }, log, client), { name: "AccessDeniedException" }, "the caller sees the error");
});
