/**
 * The parameter server process as ECS runs it (ECS_CLUSTER and WORKER_SERVICE set, no
 * TOTAL_WORKERS_EXPECTED), against a stand-in ECS endpoint — there is no AWS here; the real SDK
 * reaches the stand-in through AWS_ENDPOINT_URL_ECS. It starts with the worker service's desired
 * count and follows it when it changes (`aws ecs update-service --desired-count`), and at the end
 * of the run it scales both services to zero without the watcher taking that for a resize.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import t from "tap";
import { exitWithin, onLoopback, startProcess } from "../helpers/processes.ts";
import { ServerStatus, startServerForStatus } from "../helpers/server-status.ts";

t.test("on ECS the worker count follows the worker service's desired count", async (t) => {
  let desired = 2;
  const calls: { target: string; body: Record<string, unknown> }[] = [];
  const ecs = createServer((req, res) => {
    let text = "";
    req.on("data", (d: Buffer) => (text += d.toString()));
    req.on("end", () => {
      const target = String(req.headers["x-amz-target"] ?? "").split(".").pop() ?? "";
      const body = JSON.parse(text) as Record<string, unknown>;
      calls.push({ target, body });
      if (target === "UpdateService" && body.service === "ps-workers") desired = Number(body.desiredCount);
      res.writeHead(200, { "content-type": "application/x-amz-json-1.1" });
      res.end(
        JSON.stringify(
          target === "DescribeServices"
            ? { services: [{ serviceName: "ps-workers", status: "ACTIVE", desiredCount: desired }], failures: [] }
            : { service: { serviceName: body.service, desiredCount: body.desiredCount } },
        ),
      );
    });
  });
  await new Promise<void>((resolve) => ecs.listen(0, "127.0.0.1", resolve));
  t.teardown(() => {
    ecs.closeAllConnections();
    ecs.close();
  });

  const { port, env: serverEnv } = await onLoopback({
    DASHBOARD_PORT: "0",
    SERVER_MODE: "sync",
    ECS_CLUSTER: "ps-cluster",
    SERVER_SERVICE: "ps-server",
    WORKER_SERVICE: "ps-workers",
    WORKER_COUNT_POLL_MS: "200",
    AWS_ENDPOINT_URL_ECS: `http://127.0.0.1:${(ecs.address() as AddressInfo).port}`,
    AWS_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: "test",
    AWS_SECRET_ACCESS_KEY: "test",
  });
  const status = new ServerStatus(`127.0.0.1:${port}`);
  const { server, first } = await startServerForStatus(t, serverEnv, status);
  t.equal(first.config?.totalWorkers, 2, "it started with the service's desired count (2), not the default 4");
  const describe = calls.find((c) => c.target === "DescribeServices");
  t.same(describe?.body, { cluster: "ps-cluster", services: ["ps-workers"] }, "it asked ECS about the worker service");

  desired = 3;
  const resized = await status.until((s) => s.config?.totalWorkers === 3, "the worker count following the desired count 3", 10_000);
  t.same(resized.slots.map((s) => s.slot), [0, 1, 2], "desired count 3: slot 2 opened");
  t.equal(server.child.exitCode, null, "without a restart");

  const env = { PARAMETER_SERVER_ADDRESS: `127.0.0.1:${port}`, EPOCHS: "1", TRAIN_EXAMPLES: "960", TEST_EXAMPLES: "200" };
  const workers = [0, 1, 2].map(() => startProcess(t, "worker/src/main.ts", env));
  t.same(await Promise.all(workers.map((w) => exitWithin(w, 90_000))), [0, 0, 0], "3 workers trained and finished");
  t.equal(await exitWithin(server, 20_000), 0, "the run completed and the server exited 0");
  const scaled = calls.filter((c) => c.target === "UpdateService").map((c) => [c.body.service, c.body.desiredCount]);
  t.same(
    scaled,
    [
      ["ps-workers", 0],
      ["ps-server", 0],
    ],
    "at the end both services were scaled to zero",
  );
  t.notOk(server.lines.some((l) => /worker count 3 -> 0/.test(l)), "and the server did not mistake its own scale-down for a resize");
});
