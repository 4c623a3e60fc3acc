/**
 * One chaos run: a fresh directory, a server and three workers, the plan's faults, then the
 * verdict. The run is over when the newest server instance exits by itself (complete or not), when
 * a worker exits non-zero by itself, or when the bound passes (then it hung: everything is killed).
 *
 * Verdict:
 *   - completed: the newest server exited 0 by itself with run_complete true, no process the
 *     harness did not stop failed (and each it stopped exited as it should), and, when the plan
 *     asks for it, a server restarted on the completed run exited 0 promptly, complete;
 *   - exact: completed, the accounting holds (accounting.ts: also the state every other server
 *     instance reported as it stopped), the exported model is the final version and its accuracy
 *     falls short of the test set's Bayes rate by no more than the mode allows (job.ts).
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../free-port.ts";
import { checkAccounting, checkConsistency, compareSummaries } from "./accounting.ts";
import { Cluster, type ChaosProcess } from "./cluster.ts";
import { inject, type FaultContext, type FaultOutcome } from "./faults.ts";
import { JOB, MAX_SHORTFALL } from "./job.ts";
import { describeFault, type RunPlan } from "./plan.ts";
import { evaluateExport } from "./quality.ts";
import { ServerWatch } from "./server-watch.ts";
import { Mutex, sleep, until } from "../waiting.ts";

export interface RunOptions {
  resultsDir: string;
  /** The run's bound: past it, it hung. */
  boundMs: number;
  /** Keep the directory of a run that passed. */
  keep: boolean;
}

export type Outcome = "passed" | "inexact" | "failed" | "hung";

export interface RunResult {
  index: number;
  scenario: string;
  mode: string;
  seed: number;
  data_seed: number;
  faults: FaultOutcome[];
  outcome: Outcome;
  completed: boolean;
  exact: boolean;
  hung: boolean;
  /** Why it did not pass (empty when it did). */
  why: string[];
  duration_s: number;
  accuracy: number | null;
  /** The synthetic task's Bayes-optimal accuracy on the same test set (the ceiling). */
  bayes_accuracy: number | null;
  /** bayes_accuracy less the mode's allowed shortfall (job.ts). */
  accuracy_threshold: number | null;
  server_instances: number;
  worker_processes: number;
  /** The run's directory, when kept. */
  dir: string | null;
  /** The final METRICS_JSON of the instance that completed the run. */
  summary: Record<string, unknown> | null;
}

/** After the server completes, workers still running get this long to exit by themselves. */
const WORKERS_AFTER_COMPLETE_MS = 5_000;
/** A server restarted on a completed run must exit within this. */
const RESTART_ON_COMPLETE_MS = 15_000;


/** The line a process's failure is best explained by: its last error, else its last line. */
const lastWords = (p: ChaosProcess) => p.lastError() ?? p.lines.at(-1)?.replace(/^\S+Z\s+\w+\s+/, "") ?? "(no output)";
const STATUS_LINE = /\] (version \d+ \(|waiting for parameters)/;

export async function runOne(plan: RunPlan, o: RunOptions): Promise<RunResult> {
  const started = Date.now();
  const dir = join(o.resultsDir, `run-${String(plan.index + 1).padStart(3, "0")}-${plan.scenario}-${plan.mode}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, "checkpoints"), { recursive: true });
  mkdirSync(join(dir, "export"), { recursive: true });
  const cluster = new Cluster({ dir, port: await freePort(), mode: plan.mode, dataSeed: plan.dataSeed });
  const watch = new ServerWatch(cluster);
  cluster.note(`run ${plan.index + 1}: ${plan.scenario}, mode ${plan.mode}, seed ${plan.seed}, data seed ${plan.dataSeed}, port ${cluster.place.port}`);
  for (const f of plan.faults) cluster.note(`planned: ${describeFault(f)}`);

  const deadline = new AbortController();
  const over = new AbortController();
  const timer = setTimeout(() => {
    deadline.abort();
    over.abort();
  }, o.boundMs);
  const problems: string[] = [];
  const ctx: FaultContext = {
    cluster,
    watch,
    over: over.signal,
    serverLock: new Mutex(),
    problem: (m) => {
      cluster.note(`PROBLEM: ${m}`);
      problems.push(m);
    },
    slots: { max: JOB.workers, last: JOB.workers, lastSetAtMs: -1 },
    retiredSlots: new Set(),
  };

  const first = cluster.startServer();
  await until(() => first.lastLine(/listening on/) !== undefined || !first.alive, { signal: deadline.signal });
  for (let i = 0; i < JOB.workers; i++) cluster.startWorker();
  watch.start();
  const faults = Promise.all(plan.faults.map((f) => inject(f, ctx)));

  // The end: the newest server exits by itself, or a worker fails by itself.
  const serverEnded = () => {
    const s = cluster.server;
    return s !== undefined && s.exit !== undefined && !s.endedByHarness;
  };
  const workerFailed = () => cluster.workers.find((w) => w.failedByItself);
  await until(() => serverEnded() || workerFailed() !== undefined, { signal: deadline.signal });
  over.abort();
  // Fault tasks stop at once now, except one waiting for a process it stopped (bounded).
  const unsettled = plan.faults.map((f) => ({ description: describeFault(f), injected: false }));
  const faultOutcomes = await Promise.race([faults, sleep(20_000).then(() => unsettled)]);
  const hung = deadline.signal.aborted && !serverEnded() && workerFailed() === undefined;
  const why: string[] = [];
  let completedBy: ChaosProcess | undefined;

  if (hung) {
    const running = cluster.all().filter((p) => p.alive).map((p) => `${p.name}${p.paused ? " (paused)" : ""}`);
    const server = cluster.server!;
    const status = server.lastLine(STATUS_LINE)?.replace(/^\S+Z\s+\w+\s+\[server\]\s+/, "") ?? "none";
    why.push(`not finished within ${o.boundMs / 1000} s; running: ${running.join(", ") || "nothing"}; ${server.name}'s last status: ${status}; GetStatus: ${watch.describe()}`);
  } else if (workerFailed() !== undefined) {
    for (const w of cluster.workers.filter((w) => w.failedByItself)) why.push(`worker ${w.name} ${w.describeExit()}: ${lastWords(w)}`);
  } else {
    const server = cluster.server!;
    const m = server.metrics();
    if (server.exit!.code !== 0) why.push(`${server.name} ${server.describeExit()} by itself: ${lastWords(server)}`);
    else if (m?.run_complete !== true) why.push(`${server.name} exited 0 by itself but its METRICS_JSON ${m === undefined ? "is missing" : "says run_complete false"}`);
    else completedBy = server;
  }

  if (completedBy !== undefined) {
    cluster.note(`${completedBy.name} completed the run`);
    // Workers still running (a late replacement, one retrying its connection) get a moment, then go.
    await until(() => cluster.liveWorkers().length === 0, { timeoutMs: WORKERS_AFTER_COMPLETE_MS, signal: deadline.signal });
    await cluster.killAll("still running after the run completed");
    for (const w of cluster.workers.filter((w) => w.failedByItself)) why.push(`worker ${w.name} ${w.describeExit()}: ${lastWords(w)}`);
    const ftk = plan.faults.find((f) => f.kind === "finish-then-kill");
    if (ftk !== undefined && !deadline.signal.aborted) {
      // Planned, or the kill found the server already gone: the run completed before it could land.
      const killLanded = faultOutcomes[plan.faults.indexOf(ftk)]?.injected === true;
      if (ftk.restartAfterComplete || !killLanded) why.push(...(await restartOnCompletedRun(cluster, completedBy)));
    }
  }
  clearTimeout(timer);
  why.push(...problems);
  const completed = completedBy !== undefined && why.length === 0;
  // Every other instance that printed a summary (stopped with SIGTERM: it checkpointed that state).
  for (const s of cluster.servers) {
    const m = s === completedBy ? undefined : s.metrics();
    if (m !== undefined) for (const p of checkConsistency(m, plan.mode, JOB.batchSize)) why.push(`${s.name} (${s.describeExit()}) reported an inconsistent state: ${p}`);
  }

  let accuracy: number | null = null;
  let bayes: number | null = null;
  let threshold: number | null = null;
  const summary = completedBy?.metrics() ?? null;
  if (completed) {
    const inexact = checkAccounting(summary, {
      mode: plan.mode,
      epochs: JOB.epochs,
      trainExamples: JOB.trainExamples,
      batchSize: JOB.batchSize,
      maxSlots: ctx.slots.max,
      finalWorkerCount: expectedWorkerCount(cluster.servers, ctx.slots),
    });
    try {
      const q = await evaluateExport(join(dir, "export"), plan.dataSeed);
      accuracy = q.accuracy;
      bayes = q.bayesAccuracy;
      threshold = bayes - MAX_SHORTFALL[plan.mode];
      if (q.version !== summary?.version) inexact.push(`the exported model is version ${q.version}, the run ended at ${String(summary?.version)}`);
      if (q.accuracy < threshold) {
        inexact.push(`test accuracy ${pct(q.accuracy)} is below the threshold ${pct(threshold)} (Bayes ${pct(bayes)} less the ${plan.mode} allowance ${pct(MAX_SHORTFALL[plan.mode])})`);
      }
    } catch (err) {
      inexact.push(`the exported model could not be evaluated: ${(err as Error).message}`);
    }
    why.push(...inexact);
  }

  await cluster.killAll("the run is over");
  watch.stop();
  const exact = completed && why.length === 0;
  const outcome: Outcome = hung ? "hung" : !completed ? "failed" : exact ? "passed" : "inexact";
  cluster.note(`outcome: ${outcome}${why.length > 0 ? `: ${why.join("; ")}` : ""}`);
  cluster.close();

  const result: RunResult = {
    index: plan.index,
    scenario: plan.scenario,
    mode: plan.mode,
    seed: plan.seed,
    data_seed: plan.dataSeed,
    faults: faultOutcomes,
    outcome,
    completed,
    exact,
    hung,
    why,
    duration_s: (Date.now() - started) / 1000,
    accuracy,
    bayes_accuracy: bayes,
    accuracy_threshold: threshold,
    server_instances: cluster.servers.length,
    worker_processes: cluster.workers.length,
    dir: exact && !o.keep ? null : dir,
    summary,
  };
  writeFileSync(join(dir, "result.json"), `${JSON.stringify(result, null, 2)}\n`);
  // Let the log streams flush before the directory goes.
  await sleep(50);
  if (result.dir === null) rmSync(dir, { recursive: true, force: true });
  return result;
}

/**
 * Starts one more server on the directory of the completed run: it must see that the run is
 * complete, exit 0 promptly, say so in its METRICS_JSON, report the same state, and leave the export.
 */
async function restartOnCompletedRun(cluster: Cluster, completedBy: ChaosProcess): Promise<string[]> {
  const server = cluster.startServer();
  cluster.note(`${server.name} started on the completed run`);
  const exited = await until(() => server.exit !== undefined, { timeoutMs: RESTART_ON_COMPLETE_MS });
  if (!exited) {
    const status = server.lastLine(STATUS_LINE)?.replace(/^\S+Z\s+\w+\s+\[server\]\s+/, "") ?? lastWords(server);
    server.signal("SIGKILL");
    await server.exited;
    return [`${server.name}, restarted on the completed run, still running after ${RESTART_ON_COMPLETE_MS / 1000} s (last status: ${status})`];
  }
  await server.exited;
  cluster.note(`${server.name} ${server.describeExit()}`);
  const problems: string[] = [];
  const m = server.metrics();
  if (server.exit!.code !== 0) problems.push(`${server.name}, restarted on the completed run, ${server.describeExit()}: ${lastWords(server)}`);
  if (m?.run_complete !== true) problems.push(`${server.name}, restarted on the completed run, did not report run_complete`);
  else problems.push(...compareSummaries(completedBy.metrics(), m));
  if (!existsSync(join(cluster.place.dir, "export", "model.safetensors"))) problems.push("no export/model.safetensors after the restart on the completed run");
  return problems;
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

/**
 * The worker count the run must end with: the count last set (a checkpoint is written at every
 * resize, so a restart keeps it) — unless a server started after that had to skip a damaged
 * checkpoint and resumed from an older one: then the run went back to that checkpoint's state, its
 * worker count included.
 */
export function expectedWorkerCount(servers: readonly Pick<ChaosProcess, "startedAtMs" | "lastLine">[], slots: Pick<FaultContext["slots"], "last" | "lastSetAtMs">): number {
  const fallback = servers.filter((s) => s.startedAtMs > slots.lastSetAtMs && s.lastLine(/ is unusable \(/) !== undefined).at(-1);
  const resumed = fallback?.lastLine(/resumed from checkpoint \S+: .*, \d+ workers;/)?.match(/, (\d+) workers;/)?.[1];
  return resumed === undefined ? slots.last : Number(resumed);
}

