/**
 * `make results` and `make status` on real output: one real `make test-local` run (server and two
 * worker processes, EMF lines on), then
 * - results from its run directory: results.json and PNG charts;
 * - results and status --cloudwatch from a STAND-IN for CloudWatch Logs (a local HTTP server that
 *   answers FilterLogEvents in the AWS JSON 1.1 protocol, with pagination, holding the same run's
 *   lines plus an older run's), through the AWS SDK with an endpoint override;
 * - status over gRPC against a live in-process server.
 */
import t from "tap";
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { gradient, startTestServer, workersWithParameters } from "../../test/helpers/test-server.ts";
import { exitWithin, startNode } from "../../test/helpers/processes.ts";

/** Runs `script` (from the root); stdout and stderr apart, as the tests look at each. */
async function run(script: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  const p = startNode(undefined, script, { args, env });
  const code = await exitWithin(p, 300_000);
  return { code, out: p.stdout.join("\n"), err: p.stderr.join("\n") };
}

const isPng = (path: string) => readFileSync(path).subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

interface Results {
  source: { kind: string };
  summary: { mode: string; workers: number; mean_final_test_accuracy: number; run_complete: boolean };
  workers: { worker_id: number; final_test_accuracy: number }[];
  curves: { loss: unknown[]; evaluations: { worker: number; epoch: number }[] };
  charts: string[];
}

t.test("results and status from a real run, locally and through a CloudWatch Logs stand-in", async (t) => {
  const runDir = t.testdir();
  const local = await run("scripts/run-local.ts", [], {
    WORKERS: "2",
    MODE: "sync",
    EPOCHS: "2",
    ACCURACY_TARGET: "0.5",
    RESULTS_DIR: runDir,
    DASHBOARD_PORT: "0",
    PROGRESS_INTERVAL_MS: "300",
    METRICS_EMF: "true",
    STATUS_INTERVAL_MS: "300",
  });
  t.equal(local.code, 0, "the run passes");
  if (local.code !== 0) t.comment(local.out.slice(-3000));
  t.match(local.out, /test-local: watch the run live at http:\/\/127\.0\.0\.1:\d+\//, "run-local prints the dashboard URL");
  t.match(readFileSync(`${runDir}/server.log`, "utf8"), /"_aws":\{"Timestamp":\d+,"CloudWatchMetrics"/, "the server wrote EMF lines");

  await t.test("from the run directory", async (t) => {
    const out = t.testdir();
    const r = await run("scripts/results.ts", ["--run", runDir, "--out", out]);
    t.equal(r.code, 0, `results exits 0 ${r.err}`);
    t.match(r.out, /results: sync mode, 2\/2 workers: mean final test accuracy [\d.]+%/, "prints a summary");
    const res = JSON.parse(readFileSync(`${out}/results.json`, "utf8")) as Results;
    t.equal(res.source.kind, "local");
    t.equal(res.summary.workers, 2, "both workers' records");
    t.equal(res.summary.run_complete, true, "the server's record");
    const accuracies = res.workers.map((w) => w.final_test_accuracy);
    t.ok(Math.abs(res.summary.mean_final_test_accuracy - (accuracies[0]! + accuracies[1]!) / 2) < 1e-12, "the mean of the workers' final accuracies");
    t.same(
      res.curves.evaluations.map((e) => `${e.worker}:${e.epoch}`).sort(),
      ["0:1", "0:2", "1:1", "1:2"],
      "one evaluation per worker per epoch",
    );
    t.ok(res.curves.loss.length >= 4, `loss points from the progress lines (${res.curves.loss.length})`);
    t.same(res.charts, ["loss.png", "accuracy.png", "throughput.png"], "three charts");
    for (const c of res.charts) t.ok(isPng(`${out}/${c}`), `${c} is a PNG`);
  });

  // The stand-in: the run's lines as CloudWatch events in two log groups, plus an older run.
  const now = Date.now();
  const toEvents = (file: string) =>
    readFileSync(`${runDir}/${file}`, "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((message, i) => {
        const iso = /^(\d{4}-\S+Z) /.exec(message)?.[1];
        const emf = /"Timestamp":(\d+)/.exec(message)?.[1];
        return { logStreamName: `ecs/${file.replace(".log", "")}/task`, timestamp: iso ? Date.parse(iso) : emf ? Number(emf) : now, message, eventId: `${file}-${i}` };
      });
  const older = now - 3600_000;
  const groups: Record<string, { logStreamName: string; timestamp: number; message: string; eventId: string }[]> = {
    "/ecs/stand-in-parameter-server": [
      { logStreamName: "old", timestamp: older, eventId: "old-s", message: 'METRICS_JSON: {"role":"server","mode":"async","total_workers":9,"run_complete":true,"wall_time_s":1}' },
      ...toEvents("server.log"),
    ],
    "/ecs/stand-in-worker": [
      { logStreamName: "old", timestamp: older - 1000, eventId: "old-w", message: 'METRICS_JSON: {"role":"worker","worker_id":0,"mode":"async","final_test_accuracy":0.1,"samples_per_s":1}' },
      ...toEvents("worker-0.log"),
      ...toEvents("worker-1.log"),
    ],
  };
  const requests: { target: string; body: { logGroupName: string; nextToken?: string; filterPattern?: string } }[] = [];
  const standIn = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      const target = String(req.headers["x-amz-target"]);
      const q = JSON.parse(body) as { logGroupName: string; nextToken?: string; startTime?: number };
      requests.push({ target, body: q });
      const all = (groups[q.logGroupName] ?? []).filter((e) => e.timestamp >= (q.startTime ?? 0));
      if (target !== "Logs_20140328.FilterLogEvents" || groups[q.logGroupName] === undefined) {
        res.writeHead(400, { "Content-Type": "application/x-amz-json-1.1" }).end(JSON.stringify({ __type: "ResourceNotFoundException", message: "no such group" }));
        return;
      }
      // Pages of 10 events, so the client has to follow nextToken (a short run logs a few dozen lines).
      const from = Number(q.nextToken ?? 0);
      const page = all.slice(from, from + 10);
      const next = from + 10 < all.length ? String(from + 10) : undefined;
      res.writeHead(200, { "Content-Type": "application/x-amz-json-1.1" }).end(JSON.stringify({ events: page, ...(next ? { nextToken: next } : {}) }));
    });
  });
  await new Promise<void>((r) => standIn.listen(0, "127.0.0.1", r));
  t.teardown(() => standIn.close());
  const endpoint = `http://127.0.0.1:${(standIn.address() as AddressInfo).port}`;
  const aws = { AWS_ACCESS_KEY_ID: "stand-in", AWS_SECRET_ACCESS_KEY: "stand-in", AWS_REGION: "eu-west-1", AWS_EC2_METADATA_DISABLED: "true" };

  await t.test("from CloudWatch Logs (stand-in), keeping the latest run only", async (t) => {
    const out = t.testdir();
    const r = await run("scripts/results.ts", ["--cloudwatch", "--log-group-prefix", "/ecs/stand-in", "--since", "2h", "--endpoint", endpoint, "--out", out], aws);
    t.equal(r.code, 0, `results --cloudwatch exits 0 ${r.err}`);
    const res = JSON.parse(readFileSync(`${out}/results.json`, "utf8")) as Results;
    t.equal(res.source.kind, "cloudwatch");
    t.equal(res.summary.mode, "sync", "the latest run, not the older async one");
    t.equal(res.summary.workers, 2, "with its two workers only");
    t.equal(res.curves.evaluations.length, 4, "and their evaluations");
    t.ok(requests.filter((q) => q.body.nextToken !== undefined).length > 0, "the client followed nextToken through the pages");
    t.ok(requests.every((q) => q.target === "Logs_20140328.FilterLogEvents"), "through FilterLogEvents only");
    t.same(readdirSync(out).sort(), ["accuracy.png", "loss.png", "results.json", "throughput.png"], "results.json and the charts");
  });

  await t.test("status --cloudwatch reads the newest EMF lines (stand-in)", async (t) => {
    const r = await run("scripts/status.ts", ["--cloudwatch", "--log-group-prefix", "/ecs/stand-in", "--since", "2h", "--endpoint", endpoint], aws);
    t.equal(r.code, 0, `status --cloudwatch exits 0 ${r.err}`);
    t.match(r.out, /from \/ecs\/stand-in-parameter-server at .* — (COMPLETE|TRAINING), mode sync/, "says where and when the state is from");
    // Slots go to workers in registration order, whichever process that is.
    t.match(r.out, /^\s*0\s+finished\s+local worker [01]\s/m, "with slot 0's row, finished");
    t.match(r.out, /^\s*1\s+finished\s+local worker [01]\s/m, "and slot 1's");
    t.match(r.out, /COMPLETE, mode sync\nversion \d+ · workers 0 active, 2 finished of 2/, "the run's final state");
    t.equal((r.out.match(/local worker/g) ?? []).length, 2, "one row per slot");
    const missing = await run("scripts/status.ts", ["--cloudwatch", "--log-group-prefix", "/ecs/stand-in", "--since", "1s", "--endpoint", endpoint], aws);
    t.equal(missing.code, 1, "no recent EMF lines is an error");
    t.match(missing.err, /no EMF status lines .* METRICS_EMF=true/, "that says what to check");
  });
});

t.test("status over gRPC prints the live state of a run", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "async" });
  const [w0, w1] = await workersWithParameters(ts, 2);
  await w0!.push(gradient(0.1), 0, { exampleCount: 8 });
  await w1!.reportMetrics({ epoch: 1, version: 1, trainLoss: 0.4321, trainAccuracy: 0.7, testAccuracy: 0.81, testLoss: 0.5, samplesPerSecond: 1234, timestampMs: Date.now() });

  const r = await run("scripts/status.ts", ["--address", ts.address]);
  t.equal(r.code, 0, `status exits 0 ${r.err}`);
  t.match(r.out, new RegExp(`distributed-ps at ${ts.address.replace(/\./g, "\\.")} — TRAINING`), "names the server and the phase");
  t.match(r.out, /mode async · version 1 ·/, "mode and version");
  t.match(r.out, /^\s*0\s+active\s+w0\s/m, "slot 0's row");
  t.match(r.out, /^\s*1\s+active\s+w1\s.*0\.4321\s+81\.00%\s+1234$/m, "slot 1's row with its latest metrics");

  const json = await run("scripts/status.ts", ["--address", ts.address, "--json"]);
  const parsed = JSON.parse(json.out) as { version: number; slots: unknown[] };
  t.equal(parsed.version, 1, "--json prints the GetStatus answer");
  t.equal(parsed.slots.length, 2);

  // Elastic: a slot retired while its worker trains shows as retiring, a free one as retired, and
  // the epochs' division of the data appears.
  const part = await w0!.nextAssignment(3);
  await w1!.nextAssignment(3);
  if (part.kind !== "train") throw new Error(`expected a part, got ${part.kind}`);
  await w0!.push(gradient(0.1), 1, { exampleCount: 32, position: { epoch: 0, batch: 1, part: part.part, batches: 4 } });
  ts.server.run.resize(4);
  ts.server.run.resize(1);
  const elastic = await run("scripts/status.ts", ["--address", ts.address]);
  t.match(elastic.out, /workers 1 active, 0 finished, 0 free of 1, 1 retiring, 2 retired ·/, "the header counts the worker slots, the retiring and the retired ones");
  t.match(elastic.out, /^\s*1\s+retiring\s+w1\s/m, "slot 1 (live, retired) is retiring");
  t.match(elastic.out, /^\s*3\s+retired\s/m, "slot 3 (never held, retired) is retired");
  t.match(elastic.out, /data: epoch 1 0\/2 parts \(32 examples\)/, "the data line: epoch 1, no part complete yet, 32 examples");

  const down = await run("scripts/status.ts", ["--address", "127.0.0.1:1"]);
  t.equal(down.code, 1, "an unreachable server is an error");
  t.match(down.err, /cannot reach the parameter server at 127\.0\.0\.1:1/, "that names the address");
});
