/**
 * `make test-local`: one whole training job on this machine — the parameter server and WORKERS
 * worker processes talking gRPC over loopback — then a summary, and a non-zero exit if any process
 * failed or the accuracy target was missed.
 *
 * Settings (environment): WORKERS (4), MODE (sync|async|ssp; default sync), SHARDS (1: server
 * processes, each holding part of the tensors), ACCURACY_TARGET (0.75), RUN_TIMEOUT_S (600), PORT
 * (0 = any free port; shard 0's), RESULTS_DIR (where the logs and summary go), DASHBOARD_PORT (8080,
 * or any free port when that one is taken; 0 = any free port; served by shard 0).
 * Every other variable (EPOCHS, BATCH_SIZE, OPTIMIZER, ...) passes through to the processes.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, createWriteStream } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { enumVar, intVar, numberVar, parseEnv, ConfigError, stringVar } from "../common/src/env.ts";
import { NODE_FLAGS } from "../common/src/node-flags.ts";
import { workerEnvSchema } from "../worker/src/config.ts";
import { availableParallelism } from "node:os";
import { RunProgress } from "./lib/run-progress.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const settingsSchema = z.object({
  WORKERS: intVar({ min: 1, max: 64, default: 4 }),
  MODE: enumVar(["sync", "async", "ssp"], "sync"),
  SHARDS: intVar({ min: 1, max: 16, default: 1 }),
  ACCURACY_TARGET: numberVar({ min: 0, max: 1, default: 0.75 }),
  RUN_TIMEOUT_S: intVar({ min: 1, max: 86_400, default: 600 }),
  PORT: intVar({ min: 0, max: 65_535, default: 0 }),
  RESULTS_DIR: stringVar("a directory path", join(root, "runs", new Date().toISOString().replace(/[:.]/g, "-"))),
  DASHBOARD_PORT: intVar({ min: 0, max: 65_535, default: 8080 }),
});

let settings: z.output<typeof settingsSchema>;
try {
  settings = parseEnv(settingsSchema);
  parseEnv(workerEnvSchema); // the workers' settings: a bad one is reported here, once, before anything starts
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`test-local: ${err.message}\n`);
  process.exit(2);
}

/**
 * A free TCP port on loopback: `preferred` if it is free, else one the OS picks (we release it just
 * before the server binds it).
 */
async function freePort(preferred = 0): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", (err) => (preferred !== 0 ? freePort().then(res, rej) : rej(err)));
    s.listen(preferred, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

interface Proc {
  name: string;
  child: ChildProcess;
  exit: Promise<number>;
  metrics: Record<string, unknown> | undefined;
}

function start(name: string, script: string, env: NodeJS.ProcessEnv): Proc {
  const child = spawn(process.execPath, [...NODE_FLAGS, join(root, script)], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
  const log = createWriteStream(join(settings.RESULTS_DIR, `${name}.log`));
  const proc: Proc = {
    name,
    child,
    metrics: undefined,
    exit: new Promise((res) => child.once("exit", (code, signal) => res(code ?? (signal ? 128 : 1)))),
  };
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on("line", (line) => {
      log.write(`${line}\n`);
      const m = /^METRICS_JSON: (.*)$/.exec(line);
      if (m) proc.metrics = JSON.parse(m[1]!) as Record<string, unknown>;
      progress.line(name, line);
    });
  }
  return proc;
}

/** Prints the processes' lines; on a terminal, also one progress bar per worker. */
let progress: RunProgress;

async function main(): Promise<number> {
  mkdirSync(settings.RESULTS_DIR, { recursive: true });
  const port = settings.PORT || (await freePort());
  const ports = [port];
  while (ports.length < settings.SHARDS) ports.push(await freePort());
  const shardAddresses = ports.map((p) => `127.0.0.1:${p}`);
  const started = Date.now();
  const base = { ...process.env, TOTAL_WORKERS_EXPECTED: String(settings.WORKERS), SERVER_MODE: settings.MODE };
  // The run's identity as the workers will see it (their defaults included), given to the server
  // too: a worker started with other settings is then refused whoever registers first.
  const job = parseEnv(workerEnvSchema);
  const identity = {
    DATASET: job.DATASET,
    MODEL: job.MODEL,
    SEED: String(job.SEED),
    BATCH_SIZE: String(job.BATCH_SIZE),
    EPOCHS: String(job.EPOCHS),
    LOCAL_STEPS: String(job.LOCAL_STEPS),
  };
  const where = settings.SHARDS === 1 ? `server on ${shardAddresses[0]}` : `${settings.SHARDS} server shards on ${shardAddresses.join(", ")}`;
  console.log(`test-local: ${settings.WORKERS} workers, mode ${settings.MODE}, ${where}, logs in ${settings.RESULTS_DIR}`);
  const dashboardPort = await freePort(settings.DASHBOARD_PORT);
  const dashboardUrl = `http://127.0.0.1:${dashboardPort}/`;
  console.log(`test-local: watch the run live at ${dashboardUrl}`);
  progress = new RunProgress({ workers: settings.WORKERS, dashboardUrl });

  // Shard 0 is "server" (its log, its summary) and serves the dashboard; more shards are server-1, ...
  const servers = ports.map((p, k) =>
    start(k === 0 ? "server" : `server-${k}`, "server/src/main.ts", {
      ...base,
      ...identity,
      SERVER_PORT: String(p),
      SERVER_HOST: "127.0.0.1",
      ...(settings.SHARDS > 1 ? { SHARD_INDEX: String(k), SHARD_ADDRESSES: shardAddresses.join(",") } : {}),
      ...(k === 0 ? { DASHBOARD_PORT: String(dashboardPort) } : { DASHBOARD_ENABLED: "false" }),
    }),
  );
  const server = servers[0]!;
  // Workers share this machine's cores: each gets its share for ONNX Runtime's threads (unless
  // ENGINE_THREADS says otherwise), rather than every worker starting a thread per core.
  const engineThreads = process.env.ENGINE_THREADS ?? String(Math.max(1, Math.floor(availableParallelism() / settings.WORKERS)));
  const workers = Array.from({ length: settings.WORKERS }, (_, i) =>
    start(`worker-${i}`, "worker/src/main.ts", { ...base, ENGINE_THREADS: engineThreads, PARAMETER_SERVER_ADDRESS: `127.0.0.1:${port}`, WORKER_LABEL: `local worker ${i}` }),
  );
  const all = [...servers, ...workers];

  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    console.error(`test-local: the run exceeded RUN_TIMEOUT_S=${settings.RUN_TIMEOUT_S}; stopping every process`);
    for (const p of all) p.child.kill("SIGKILL");
  }, settings.RUN_TIMEOUT_S * 1000);
  const stopAll = () => {
    for (const p of all) p.child.kill("SIGTERM");
  };
  process.once("SIGINT", stopAll);
  process.once("SIGTERM", stopAll);

  const workerCodes = await Promise.all(workers.map((w) => w.exit));
  progress.finish();
  // The servers exit by themselves once every worker has finished; give them a moment, then insist.
  const serverCodes = await Promise.all(servers.map((s) => Promise.race([s.exit, new Promise<number>((res) => setTimeout(() => res(-1), 10_000))])));
  servers.forEach((s, k) => serverCodes[k] === -1 && s.child.kill("SIGTERM"));
  clearTimeout(timer);
  const wall = (Date.now() - started) / 1000;

  const failures: string[] = [];
  if (timedOut) failures.push("timed out");
  workers.forEach((w, i) => {
    if (workerCodes[i] !== 0) failures.push(`${w.name} exited with code ${workerCodes[i]}`);
    else if (w.metrics === undefined) failures.push(`${w.name} printed no METRICS_JSON`);
  });
  servers.forEach((s, k) => {
    const code = serverCodes[k];
    if (code !== 0) failures.push(code === -1 ? `${s.name} did not exit after the run` : `${s.name} exited with code ${code}`);
  });

  const accuracies = workers.map((w) => Number(w.metrics?.final_test_accuracy ?? NaN));
  const accuracy = Math.min(...accuracies);
  if (!(accuracy >= settings.ACCURACY_TARGET)) {
    failures.push(`final test accuracy ${(accuracy * 100).toFixed(2)}% is below the target ${(settings.ACCURACY_TARGET * 100).toFixed(2)}%`);
  }

  const summary = {
    mode: settings.MODE,
    workers: settings.WORKERS,
    shards: settings.SHARDS,
    wall_time_s: wall,
    final_test_accuracy: accuracy,
    accuracy_target: settings.ACCURACY_TARGET,
    passed: failures.length === 0,
    failures,
    server: server.metrics,
    ...(settings.SHARDS > 1 ? { shard_servers: servers.map((s) => s.metrics) } : {}),
    worker_metrics: workers.map((w) => w.metrics),
  };
  await writeFile(join(settings.RESULTS_DIR, "summary.json"), `${JSON.stringify(summary, null, 2)}\n`);

  console.log("");
  console.log(`slot  test accuracy  steps  samples/s`);
  for (const w of workers) {
    const m = w.metrics;
    if (!m) continue;
    console.log(
      `${String(m.worker_id).padStart(4)}  ${(Number(m.final_test_accuracy) * 100).toFixed(2).padStart(12)}%  ${String(m.steps).padStart(5)}  ${Number(m.samples_per_s).toFixed(0).padStart(9)}`,
    );
  }
  console.log(
    `test-local: mode ${settings.MODE}, ${settings.WORKERS} workers${settings.SHARDS > 1 ? `, ${settings.SHARDS} shards` : ""}: final test accuracy ${(accuracy * 100).toFixed(2)}% ` +
      `(target ${(settings.ACCURACY_TARGET * 100).toFixed(0)}%) in ${wall.toFixed(1)} s — ${failures.length === 0 ? "PASSED" : "FAILED"}`,
  );
  for (const f of failures) console.log(`  - ${f}`);
  console.log(`RUN_JSON: ${JSON.stringify({ mode: summary.mode, workers: summary.workers, shards: summary.shards, wall_time_s: wall, final_test_accuracy: accuracy, passed: summary.passed })}`);
  return failures.length === 0 ? 0 : 1;
}

process.exit(await main());
