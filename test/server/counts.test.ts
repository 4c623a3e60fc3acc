/**
 * What the server counts and averages: a slot's gradients are those in the parameters (a gradient
 * waiting in an open sync step when a checkpoint is taken is not, and is pushed again after a
 * restart), and a worker's "not measured" (-1) never enters an average.
 */
import t from "tap";
import { createLogger } from "@distributed-ps/common/log.ts";
import { captureCheckpoint, parseCheckpoint } from "../../server/src/checkpoint/checkpointer.ts";
import { StatusReporter } from "../../server/src/observability/status-reporter.ts";
import { atBarrier, gradient, settledWithin, startTestServer, workersWithParameters } from "../helpers/test-server.ts";

t.test("sync: a gradient waiting at the barrier is not counted until its step is applied", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync" });
  const [a, b] = await workersWithParameters(ts, 2);
  const run = ts.server.run;
  const waiting = a!.push(gradient(1), 0, { exampleCount: 32, position: { epoch: 0, batch: 1 } });
  await atBarrier(ts, 0);
  t.equal(await settledWithin(waiting, 10), "pending", "slot 0's push waits at the barrier for slot 1's");
  const captured = captureCheckpoint(run);
  const checkpoint = parseCheckpoint(captured.key, captured.bytes);
  t.same(checkpoint.slots.map((s) => s.pushes), [0, 0], "a checkpoint taken now (SIGTERM) counts no gradient: none is in its parameters");
  t.same(checkpoint.slots.map((s) => s.position.batch), [0, 0], "and keeps the data positions of the parameters it holds");
  t.same(new StatusReporter(run, createLogger("test", "error"), 0).summary().gradients_per_slot, [0, 0], "nor does the summary");
  await Promise.all([waiting, b!.push(gradient(1), 0, { exampleCount: 32, position: { epoch: 0, batch: 1 } })]);
  t.same(run.membership.slots.map((s) => s.pushes), [1, 1], "once the step is applied, one gradient per slot");
});

t.test("the status line averages only what the workers measured", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync" });
  const [a, b] = await workersWithParameters(ts, 2);
  const base = { epoch: 0, version: 0, trainAccuracy: -1, samplesPerSecond: 0, timestampMs: Date.now() };
  // A finished worker's last report: no batch since its previous report, its final test accuracy.
  await a!.reportMetrics({ ...base, trainLoss: -1, testAccuracy: 0.8, testLoss: 0.6 });
  // A training worker's report: a loss, no test this time.
  await b!.reportMetrics({ ...base, trainLoss: 0.5, testAccuracy: -1, testLoss: -1 });
  const lines: string[] = [];
  new StatusReporter(ts.server.run, createLogger("server", "info", (l) => lines.push(l)), 0).report();
  t.match(lines[0], /train loss 0\.5000/, `the train loss is slot 1's alone: ${lines[0]}`);
  t.match(lines[0], /test acc 80\.00%/, "the test accuracy is slot 0's alone");
  t.notMatch(lines[0], /-0\.\d/, "no negative value appears");
});
