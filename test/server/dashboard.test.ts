/**
 * The dashboard listener: its page, the two RPCs it serves over HTTP/1.1 (Connect protocol, JSON),
 * /metrics and /healthz — and, in headless Chromium against a live run (a real server process and
 * two real worker processes), that the page shows the workers and a loss curve that grows. The
 * browser test saves its screenshots under test/output/ (and, with UPDATE_SCREENSHOTS=1 or
 * when missing, the README's docs/dashboard.png).
 */
import t from "tap";
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { publicConfiguration, RunTelemetry } from "../../server/src/observability/telemetry.ts";
import { startDashboard } from "../../server/src/observability/dashboard-server.ts";
import { freePort, onLoopback, ROOT, startNode } from "../helpers/processes.ts";
import { startAnsweringServer } from "../helpers/server-status.ts";
import { startTestServer, workersWithParameters, gradient } from "../helpers/test-server.ts";
import { waitUntil } from "../helpers/wait.ts";

const CHROMIUM = "/usr/bin/chromium";

async function post(url: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

t.test("the dashboard port serves the page, status and history as JSON, /metrics and /healthz, and nothing that changes state", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "async" });
  const run = ts.server.run;
  const telemetry = new RunTelemetry(run, { sampleIntervalMs: 0, configuration: publicConfiguration(ts.config) });
  t.teardown(() => telemetry.close());
  const dash = await startDashboard({ run, telemetry, host: "127.0.0.1", port: 0, grpcAddress: ts.address });
  t.teardown(() => dash.close());
  t.match(dash.url, /^http:\/\/127\.0\.0\.1:\d+\/$/, "the URL names the listener");

  const [w0, w1] = await workersWithParameters(ts, 2);
  for (let i = 0; i < 3; i++) await w0!.push(gradient(0.1), i, { exampleCount: 32 });
  await w1!.push(gradient(0.1), 1, { exampleCount: 32 }); // two versions behind
  await w0!.reportMetrics({ epoch: 0, version: 3, trainLoss: 0.5, trainAccuracy: 0.8, testAccuracy: -1, testLoss: -1, samplesPerSecond: 100, timestampMs: Date.now() });
  telemetry.sample();

  const page = await fetch(dash.url);
  t.equal(page.status, 200, "GET / answers");
  t.match(page.headers.get("content-type"), /text\/html/, "with HTML");
  t.match(page.headers.get("content-security-policy"), /default-src 'self'/, "under a same-origin content security policy");
  t.match(await page.text(), /<script type="module" src="\/dashboard.js">/, "that loads the dashboard script");
  for (const asset of ["dashboard.js", "line-chart.js", "style.css"]) {
    t.equal((await fetch(`${dash.url}${asset}`)).status, 200, `${asset} is served`);
  }
  t.equal((await fetch(`${dash.url}nope`)).status, 404, "unknown paths are 404");

  const status = await post(`${dash.url}paramserver.v1.ParameterServerService/GetStatus`, {});
  t.equal(status.status, 200, "GetStatus answers over HTTP/1.1 with the Connect protocol");
  t.equal(status.json.version, 4, "with the current version");
  t.equal((status.json.slots as unknown[]).length, 2, "and both slots");

  const history = await post(`${dash.url}paramserver.v1.TelemetryService/GetMetricsHistory`, { sinceMs: 0 });
  t.equal(history.status, 200, "GetMetricsHistory answers");
  const h = history.json as { samples: { version: number; maxStaleness?: number }[]; reports: { metrics: { trainLoss: number } }[]; slots: { slot?: number; maxStaleness?: number }[]; configuration: Record<string, string> };
  t.equal(h.samples.at(-1)?.version, 4, "the latest sample has the version");
  t.equal(h.samples.at(-1)?.maxStaleness, 2, "and the staleness of the late gradient");
  t.equal(h.reports[0]?.metrics.trainLoss, 0.5, "the metrics report is in the history");
  t.equal(h.slots.find((s) => (s.slot ?? 0) === 1)?.maxStaleness, 2, "per-slot staleness is measured");
  t.equal(h.configuration.SERVER_MODE, "async", "the configuration is included");
  const later = await post(`${dash.url}paramserver.v1.TelemetryService/GetMetricsHistory`, { sinceMs: Date.now() + 60_000 });
  t.same((later.json as { samples?: unknown[] }).samples ?? [], [], "since_ms filters out what the caller already has");

  const register = await post(`${dash.url}paramserver.v1.ParameterServerService/Register`, { preferredSlot: -1, jobFingerprint: "x" });
  t.equal(register.json.code, "unimplemented", "Register is not served on the dashboard port");

  const metrics = await fetch(`${dash.url}metrics`);
  t.match(metrics.headers.get("content-type"), /^text\/plain; version=0\.0\.4/, "/metrics is Prometheus text format 0.0.4");
  t.match(await metrics.text(), /^ps_parameter_version 4$/m, "with the version");
  const health = await fetch(`${dash.url}healthz`);
  t.equal(health.status, 200, "/healthz answers 200");
  t.equal((await fetch(dash.url, { method: "DELETE" })).status, 405, "other methods are refused");
});

t.test("headless Chromium watches a live run: both workers and a loss curve that grows", { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is absent (apt-get install chromium)` }, async (t) => {
  const { chromium } = await import("playwright-core");
  const outDir = fileURLToPath(new URL("../output/", import.meta.url));
  mkdirSync(outDir, { recursive: true });

  const dashboardPort = await freePort();
  const { port, env } = await onLoopback({
    DASHBOARD_PORT: String(dashboardPort),
    TOTAL_WORKERS_EXPECTED: "2",
    // Async, so that the staleness chart has something to show in the screenshot.
    SERVER_MODE: "async",
    EXIT_ON_COMPLETE: "false",
  });
  const server = await startAnsweringServer(t, env);
  const url = `http://127.0.0.1:${dashboardPort}/`;
  // The dashboard starts after the gRPC port answers.
  await waitUntil(async () => (await fetch(`${url}healthz`).catch(() => undefined))?.ok === true, `the dashboard answering at ${url}healthz`, { timeoutMs: 20_000, pollMs: 50 });
  for (let i = 0; i < 2; i++) {
    startNode(t, "worker/src/main.ts", {
      env: {
        PARAMETER_SERVER_ADDRESS: `127.0.0.1:${port}`,
        WORKER_LABEL: `browser-test worker ${i}`,
        // Six epochs on the tfjs engine: the browser must catch the run while it trains. ONNX
        // Runtime finishes three in about three seconds, and tfjs three once ended between the loss
        // curve's growth and the badge's check (CI here, 2026-12-05).
        EPOCHS: "6",
        PROGRESS_INTERVAL_MS: "300",
        WORKER_ENGINE: "tfjs",
      },
    });
  }

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 }, deviceScaleFactor: 1 });
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  await page.goto(url);
  // Long after start-up, so the line has surely been read.
  t.ok(server.lines.some((l) => l.includes(`dashboard on ${url}`)), "the server logs the dashboard URL at start-up");

  // Page-side expressions are strings: the test is typechecked without the DOM library.
  const LOSS_POINTS = `Number(document.querySelector('[data-chart="loss"] svg')?.dataset.points ?? 0)`;
  const ACCURACY_POINTS = `Number(document.querySelector('[data-chart="accuracy"] svg')?.dataset.points ?? 0)`;
  const ROW_STATES = `[...document.querySelectorAll("#workers tbody tr")].map((tr) => tr.dataset.state)`;
  const BADGE = `document.querySelector("#state")?.dataset.state`;
  // Polled from here: Playwright's own waitForFunction would eval() in the page, which its CSP forbids.
  const pageSatisfies = (expr: string, ms: number) => waitUntil(async () => Boolean(await page.evaluate(expr)), `the page satisfying ${expr}`, { timeoutMs: ms, pollMs: 200 });

  await pageSatisfies(`${ROW_STATES}.filter((s) => s === "active").length === 2`, 60_000);
  const labels = (await page.evaluate(`[...document.querySelectorAll("#workers tbody tr td:nth-child(3)")].map((td) => td.textContent)`)) as string[];
  t.same(labels.sort(), ["browser-test worker 0", "browser-test worker 1"], "the workers table shows both workers by label");

  await pageSatisfies(`${LOSS_POINTS} >= 4`, 60_000);
  const first = (await page.evaluate(LOSS_POINTS)) as number;
  await pageSatisfies(`${LOSS_POINTS} > ${first + 2}`, 60_000);
  const second = (await page.evaluate(LOSS_POINTS)) as number;
  t.ok(second > first, `the loss curve grows while the run trains (${first} → ${second} points)`);
  t.equal(await page.evaluate(BADGE), "training", "the badge says training");
  await page.screenshot({ path: `${outDir}dashboard-live.png`, fullPage: true });

  await pageSatisfies(`${BADGE} === "complete"`, 120_000);
  await page.waitForTimeout(1500); // one more poll, so the last sample and reports are drawn
  const accuracyPoints = (await page.evaluate(ACCURACY_POINTS)) as number;
  t.ok(accuracyPoints >= 6, `the accuracy chart has each worker's evaluations (${accuracyPoints} points)`);
  t.same(await page.evaluate(ROW_STATES), ["finished", "finished"], "at the end both workers show as finished");
  await page.screenshot({ path: `${outDir}dashboard.png`, fullPage: true });
  t.same(errors, [], "the page logged no errors");

  const docs = `${ROOT}docs/dashboard.png`;
  if (process.env.UPDATE_SCREENSHOTS === "1" || !existsSync(docs)) {
    mkdirSync(`${ROOT}docs`, { recursive: true });
    copyFileSync(`${outDir}dashboard.png`, docs);
  }
  t.comment(`screenshots: ${outDir}dashboard-live.png, ${outDir}dashboard.png`);
});
