/**
 * Carrying out a run's faults against its processes. Every fault of the plan runs as its own task,
 * all at once: each waits for its trigger (progress, or a worker finishing), acts, and does its
 * follow-up (a replacement, a restart, SIGCONT) after its delay. Faults on the server take turns
 * (one lock), so that a restart is never interleaved with another fault on the server. Once the
 * run is over (complete, failed, or out of time) no task starts anything new.
 */
import type { ChaosProcess, Cluster } from "./cluster.ts";
import { checkpointFiles, damageNewestCheckpoint } from "./checkpoint-damage.ts";
import { TOTAL_GRADIENTS } from "./job.ts";
import { describeFault, type Fault, type FinishThenKill, type Scale, type WorkerKill, type WorkerPause, type ServerKill, type ServerPause, type DamageCheckpoint } from "./plan.ts";
import type { ServerWatch } from "./server-watch.ts";
import { Mutex, sleep, until } from "../waiting.ts";

/** A server has this long to exit after SIGTERM (it checkpoints first); a worker, to leave. */
const TERM_EXIT_MS = 15_000;

export interface FaultContext {
  cluster: Cluster;
  watch: ServerWatch;
  /** Aborted once the run is over: nothing new is started after it. */
  over: AbortSignal;
  /** One fault on the server at a time. */
  serverLock: Mutex;
  /** Records a failure seen while injecting (a process that misbehaved when stopped). */
  problem(message: string): void;
  /** Worker slots: the most the run had at once, the count last set and when (cluster clock; -1: never). */
  slots: { max: number; last: number; lastSetAtMs: number };
  /** Slots retired by a scale-down. */
  retiredSlots: Set<number>;
}

export interface FaultOutcome {
  description: string;
  injected: boolean;
}

const FINISHED = /\] finished: test accuracy/;
const RETIRED = /\] retired: test accuracy/;

/** Whether a worker process is still expected to train: running, not finished, not retired. */
function training(w: ChaosProcess, retiredSlots: ReadonlySet<number>): boolean {
  return w.alive && w.lastLine(FINISHED) === undefined && w.lastLine(RETIRED) === undefined && !(w.slot !== undefined && retiredSlots.has(w.slot));
}

function progressPassed(ctx: FaultContext, fraction: number): boolean {
  return ctx.watch.gradients >= fraction * TOTAL_GRADIENTS;
}

const progressText = (ctx: FaultContext) => `at ${ctx.watch.gradients}/${TOTAL_GRADIENTS} gradients`;

/** The worker a fault targets: `target` mod the number of running, unpaused workers (in start order). */
function pickWorker(ctx: FaultContext, target: number): ChaosProcess | undefined {
  const candidates = ctx.cluster.workers.filter((w) => w.alive && !w.paused);
  return candidates.length === 0 ? undefined : candidates[target % candidates.length];
}

const slotText = (w: ChaosProcess) => (w.slot === undefined ? "unregistered" : `slot ${w.slot}`);

async function waitExit(p: ChaosProcess, ms: number): Promise<boolean> {
  return until(() => p.exit !== undefined, { timeoutMs: ms, pollMs: 20 }).then(async (done) => (done ? (await p.exited, true) : false));
}

async function killWorker(f: WorkerKill, ctx: FaultContext): Promise<boolean> {
  const { cluster } = ctx;
  if (!(await until(() => progressPassed(ctx, f.at) && pickWorker(ctx, f.target) !== undefined, { signal: ctx.over }))) return false;
  const victim = pickWorker(ctx, f.target)!;
  victim.signal(f.signal);
  cluster.note(`${f.signal} ${victim.name} (${slotText(victim)}) ${progressText(ctx)}`);
  if (f.signal === "SIGTERM") {
    if (!(await waitExit(victim, TERM_EXIT_MS))) {
      ctx.problem(`${victim.name} still running ${TERM_EXIT_MS / 1000} s after SIGTERM`);
      victim.signal("SIGKILL");
    } else if (victim.exit!.code !== 143) {
      ctx.problem(`${victim.name} ${victim.describeExit()} after SIGTERM, expected 143${victim.lastError() ? `: ${victim.lastError()}` : ""}`);
    }
  }
  await victim.exited;
  cluster.note(`${victim.name} ${victim.describeExit()}`);
  let delay = f.replaceAfterMs;
  if (delay === null && !cluster.workers.some((w) => training(w, ctx.retiredSlots))) {
    // The plan may not leave the run without anyone to train it: that would hang it by design.
    delay = 0;
    cluster.note(`no worker left to train: replacing ${victim.name} after all`);
  }
  if (delay !== null && (await sleep(delay, ctx.over))) {
    const replacement = cluster.startWorker();
    cluster.note(`${replacement.name} replaces ${victim.name}`);
  }
  return true;
}

async function pauseWorker(f: WorkerPause, ctx: FaultContext): Promise<boolean> {
  if (!(await until(() => progressPassed(ctx, f.at) && pickWorker(ctx, f.target) !== undefined, { signal: ctx.over }))) return false;
  const victim = pickWorker(ctx, f.target)!;
  victim.signal("SIGSTOP");
  ctx.cluster.note(`SIGSTOP ${victim.name} (${slotText(victim)}) ${progressText(ctx)} for ${f.pauseMs} ms`);
  await sleep(f.pauseMs, ctx.over);
  if (victim.signal("SIGCONT")) ctx.cluster.note(`SIGCONT ${victim.name}`);
  return true;
}

/** Stops the server with `signal` (waiting for its exit); false if it was no longer running. */
async function stopServer(ctx: FaultContext, signal: "SIGKILL" | "SIGTERM", why: string): Promise<boolean> {
  const server = ctx.cluster.server;
  if (server === undefined || !server.alive || ctx.over.aborted) return false;
  server.signal(signal);
  ctx.cluster.note(`${signal} ${server.name} ${why}`);
  if (signal === "SIGTERM") {
    if (!(await waitExit(server, TERM_EXIT_MS))) {
      ctx.problem(`${server.name} still running ${TERM_EXIT_MS / 1000} s after SIGTERM; last line: ${server.lines.at(-1) ?? ""}`);
      server.signal("SIGKILL");
    } else if (server.exit!.code !== 0) {
      ctx.problem(`${server.name} ${server.describeExit()} after SIGTERM, expected 0${server.lastError() ? `: ${server.lastError()}` : ""}`);
    }
  }
  await server.exited;
  ctx.cluster.note(`${server.name} ${server.describeExit()}`);
  return true;
}

/** Starts the next server instance after `delayMs`, unless the run is over by then. */
async function restartServer(ctx: FaultContext, delayMs: number): Promise<void> {
  if (await sleep(delayMs, ctx.over)) ctx.cluster.startServer();
}

async function killServer(f: ServerKill, ctx: FaultContext): Promise<boolean> {
  if (!(await until(() => progressPassed(ctx, f.at), { signal: ctx.over }))) return false;
  return ctx.serverLock.run(async () => {
    if (!(await stopServer(ctx, f.signal, progressText(ctx)))) return false;
    await restartServer(ctx, f.restartAfterMs);
    return true;
  });
}

async function pauseServer(f: ServerPause, ctx: FaultContext): Promise<boolean> {
  if (!(await until(() => progressPassed(ctx, f.at), { signal: ctx.over }))) return false;
  return ctx.serverLock.run(async () => {
    const server = ctx.cluster.server;
    if (server === undefined || !server.alive || ctx.over.aborted) return false;
    server.signal("SIGSTOP");
    ctx.cluster.note(`SIGSTOP ${server.name} ${progressText(ctx)} for ${f.pauseMs} ms`);
    await sleep(f.pauseMs, ctx.over);
    if (server.signal("SIGCONT")) ctx.cluster.note(`SIGCONT ${server.name}`);
    return true;
  });
}

async function damageCheckpoint(f: DamageCheckpoint, ctx: FaultContext): Promise<boolean> {
  const dir = ctx.cluster.place.dir + "/checkpoints";
  if (!(await until(() => progressPassed(ctx, f.at) && checkpointFiles(dir).length >= 2, { signal: ctx.over }))) return false;
  return ctx.serverLock.run(async () => {
    if (!(await stopServer(ctx, "SIGKILL", progressText(ctx)))) return false;
    ctx.cluster.note(`checkpoints: ${checkpointFiles(dir).join(", ")}`);
    ctx.cluster.note(`damaged: ${await damageNewestCheckpoint(dir, f.damage)}`);
    await restartServer(ctx, f.restartAfterMs);
    return true;
  });
}

/** The first worker process that logged that it finished. */
const firstFinished = (ctx: FaultContext) => ctx.cluster.workers.find((w) => w.lastLine(FINISHED) !== undefined);

async function finishThenKill(f: FinishThenKill, ctx: FaultContext): Promise<boolean> {
  // Reacting to the line as it arrives: the server may complete within milliseconds of it.
  const first = await ctx.cluster.firstWorkerLine(FINISHED, ctx.over);
  if (first === undefined) return false;
  ctx.cluster.note(`${first.name} finished`);
  if (!(await sleep(f.afterFinishMs, ctx.over))) return false;
  return ctx.serverLock.run(async () => {
    if (!(await stopServer(ctx, "SIGKILL", `${f.afterFinishMs} ms after ${first.name} finished`))) return false;
    await restartServer(ctx, f.restartAfterMs);
    return true;
  });
}

/** SetWorkerCount(count), retried while the server is down, paused or restarting; undefined once the run is over. */
async function setWorkerCount(ctx: FaultContext, count: number): Promise<{ count: number; opened: number[]; retired: number[] } | undefined> {
  while (!ctx.over.aborted) {
    const client = ctx.watch.client();
    if (client !== undefined) {
      try {
        const r = await client.setWorkerCount({ count }, { timeoutMs: 2000 });
        ctx.cluster.note(`SetWorkerCount(${count}) ${progressText(ctx)}: count ${r.count}, opened [${r.opened.join(", ")}], retired [${r.retired.join(", ")}]`);
        return { count: r.count, opened: [...r.opened], retired: [...r.retired] };
      } catch (err) {
        ctx.cluster.note(`SetWorkerCount(${count}) failed: ${(err as Error).message}; retrying`);
      }
    }
    await sleep(200, ctx.over);
  }
  return undefined;
}

async function scale(f: Scale, ctx: FaultContext): Promise<boolean> {
  const { cluster } = ctx;
  if (!(await until(() => progressPassed(ctx, f.upAt), { signal: ctx.over }))) return false;
  const up = await setWorkerCount(ctx, f.up);
  if (up === undefined) return false;
  ctx.slots.max = Math.max(ctx.slots.max, up.count);
  ctx.slots.last = up.count;
  ctx.slots.lastSetAtMs = cluster.clock();
  // As many workers as it takes to have `up` training (slots freed by earlier kills included).
  const more = Math.max(0, up.count - cluster.workers.filter((w) => training(w, ctx.retiredSlots)).length);
  if (await sleep(f.startDelayMs, ctx.over)) for (let i = 0; i < more; i++) cluster.startWorker();

  const downNow = f.downAfterFinish ? () => firstFinished(ctx) !== undefined : () => progressPassed(ctx, f.downAt);
  if (!(await until(downNow, { signal: ctx.over }))) return true;
  const down = await setWorkerCount(ctx, f.down);
  if (down === undefined) return true;
  ctx.slots.last = down.count;
  ctx.slots.lastSetAtMs = cluster.clock();
  for (const slot of down.retired) ctx.retiredSlots.add(slot);
  await Promise.all(
    down.retired.map(async (slot, i) => {
      const after = f.killRetiredAfterMs[i] ?? null;
      if (after === null || !(await sleep(after, ctx.over))) return;
      const holder = cluster.workers.find((w) => w.alive && w.slot === slot);
      if (holder === undefined) return cluster.note(`retired slot ${slot}: no running worker holds it`);
      holder.signal("SIGKILL");
      cluster.note(`SIGKILL ${holder.name} (retired slot ${slot})`);
    }),
  );
  return true;
}

/** Carries out one fault; resolves once it and its follow-ups are done, or the run is over. */
export async function inject(fault: Fault, ctx: FaultContext): Promise<FaultOutcome> {
  const run = (): Promise<boolean> => {
    switch (fault.kind) {
      case "kill-worker":
        return killWorker(fault, ctx);
      case "pause-worker":
        return pauseWorker(fault, ctx);
      case "kill-server":
        return killServer(fault, ctx);
      case "pause-server":
        return pauseServer(fault, ctx);
      case "scale":
        return scale(fault, ctx);
      case "damage-checkpoint":
        return damageCheckpoint(fault, ctx);
      case "finish-then-kill":
        return finishThenKill(fault, ctx);
    }
  };
  const injected = await run();
  if (!injected) ctx.cluster.note(`not injected (the run ended first): ${describeFault(fault)}`);
  return { description: describeFault(fault), injected };
}

