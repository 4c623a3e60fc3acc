/**
 * The fault plan of one chaos run, drawn from the run's seed alone: which faults, at what point of
 * the training, with which delays. The same (scenario, seed) always gives the same plan, so a
 * failing run is replayed with `make chaos SEED=<run seed> RUNS=1 SCENARIO=<scenario> MODE=<mode>`.
 * Only the plan is reproducible: when a fault lands relative to the processes' own timing is not.
 *
 * Faults fire on progress, not on wall time (the synthetic task trains in seconds): `at` is a
 * fraction of the run's gradients (EPOCHS × TRAIN_EXAMPLES / BATCH_SIZE), read from the server's
 * GetStatus. Worker targets are drawn as a number and resolved when the fault fires, among the
 * worker processes alive then (target mod their count, in start order).
 */
import { Random, deriveSeed } from "../../../worker/src/data/random.ts";

export const MODES = ["sync", "async", "ssp"] as const;
export type Mode = (typeof MODES)[number];

/** Every scenario `make chaos` runs by default, in the order runs are spread over them. */
export const SCENARIOS = [
  "worker-kill",
  "worker-term",
  "worker-pause",
  "server-kill",
  "server-term",
  "server-pause",
  "scale",
  "checkpoint-damage",
  "finish-then-kill",
  "mixed",
] as const;
/** `clean` injects nothing: the undisturbed runs the quality thresholds were calibrated on. Only when named. */
export const EXTRA_SCENARIOS = ["clean"] as const;
export type Scenario = (typeof SCENARIOS)[number] | (typeof EXTRA_SCENARIOS)[number];

/** A worker process to act on, among those alive when the fault fires: `target` mod their count. */
export interface WorkerKill {
  kind: "kill-worker";
  signal: "SIGKILL" | "SIGTERM";
  at: number;
  target: number;
  /** A new worker process after this many ms; null: never. */
  replaceAfterMs: number | null;
}
export interface WorkerPause {
  kind: "pause-worker";
  at: number;
  target: number;
  /** SIGSTOP, then SIGCONT after this many ms (the lease is 1000 ms). */
  pauseMs: number;
}
export interface ServerKill {
  kind: "kill-server";
  signal: "SIGKILL" | "SIGTERM";
  at: number;
  /** Restarted on the same port and checkpoint directory this many ms after it exited. */
  restartAfterMs: number;
}
export interface ServerPause {
  kind: "pause-server";
  at: number;
  pauseMs: number;
}
export interface Scale {
  kind: "scale";
  /** SetWorkerCount(up) at progress `upAt`, then start as many workers as it opened slots, each after `startDelayMs`. */
  upAt: number;
  up: number;
  startDelayMs: number;
  /** SetWorkerCount(down) at progress `downAt` (> upAt), or, when `downAfterFinish`, once the first worker has finished. */
  downAt: number;
  downAfterFinish: boolean;
  down: number;
  /** Per retired slot, in the order SetWorkerCount lists them: SIGKILL its worker after this many ms, or null: let it stop by itself. */
  killRetiredAfterMs: (number | null)[];
}
/**
 * Cut the file to `fraction` of its length; or XOR `xor` into the byte at `fraction` of a region:
 * the header (the 8-byte length and the JSON with the metadata: version, slots, data plan,
 * checksum) or the tensor data. The header is a few percent of the file, so it is chosen as often
 * as the data, or a flip would rarely test what a checksum over the data alone misses.
 */
export type CheckpointDamage = { kind: "truncate"; fraction: number } | { kind: "flip"; region: "header" | "data"; fraction: number; xor: number };
export interface DamageCheckpoint {
  kind: "damage-checkpoint";
  /** Fires once progress passes `at` and at least two checkpoints exist (so there is one to fall back to). */
  at: number;
  /** Applied to the newest ckpt-*.safetensors after SIGKILL. */
  damage: CheckpointDamage;
  restartAfterMs: number;
}
export interface FinishThenKill {
  kind: "finish-then-kill";
  /** SIGKILL the server this long after the first worker logs that it finished, then restart it. */
  afterFinishMs: number;
  restartAfterMs: number;
  /** Once the run has completed, start one more server on its directory: it must exit 0 promptly, complete. */
  restartAfterComplete: boolean;
}
export type Fault = WorkerKill | WorkerPause | ServerKill | ServerPause | Scale | DamageCheckpoint | FinishThenKill;

export interface RunPlan {
  /** 0-based position in the suite. */
  index: number;
  scenario: Scenario;
  mode: Mode;
  /** The seed the plan was drawn from. */
  seed: number;
  /** The processes' SEED (data, partition, initial weights): 31 bits, as they accept. */
  dataSeed: number;
  faults: Fault[];
}

/** Where progress triggers may fall: late enough that training has begun, early enough that it has not ended. */
const FIRST_AT = 0.05;
const LAST_AT = 0.85;

const uniform = (rng: Random, lo: number, hi: number) => lo + (hi - lo) * rng.nextFloat();
const ms = (rng: Random, lo: number, hi: number) => Math.round(uniform(rng, lo, hi));
const at = (rng: Random, lo = FIRST_AT, hi = LAST_AT) => Math.round(uniform(rng, lo, hi) * 1000) / 1000;
/** A worker replaced after 0–4 s, or (probability 1/3) never. */
const replacement = (rng: Random) => (rng.nextInt(3) === 0 ? null : ms(rng, 0, 4000));

function workerKill(rng: Random, signal: "SIGKILL" | "SIGTERM"): WorkerKill {
  return { kind: "kill-worker", signal, at: at(rng), target: rng.nextUint32(), replaceAfterMs: replacement(rng) };
}

function scale(rng: Random): Scale {
  const upAt = at(rng, FIRST_AT, 0.35);
  const up = 4 + rng.nextInt(2);
  const down = 2 + rng.nextInt(2);
  return {
    kind: "scale",
    upAt,
    up,
    startDelayMs: ms(rng, 0, 1000),
    downAt: at(rng, upAt + 0.15, LAST_AT),
    // The other workers may have finished then, or still train the last epoch (async, ssp): a
    // retired slot's unfinished part must still be trained by someone.
    downAfterFinish: rng.nextInt(2) === 0,
    down,
    killRetiredAfterMs: Array.from({ length: 3 }, () => (rng.nextInt(2) === 0 ? null : ms(rng, 0, 3000))),
  };
}

/** The faults of one scenario (for `mixed`, of the scenario drawn). */
function faultsOf(scenario: Exclude<Scenario, "mixed">, rng: Random): Fault[] {
  switch (scenario) {
    case "clean":
      return [];
    case "worker-kill":
      return Array.from({ length: 1 + rng.nextInt(2) }, () => workerKill(rng, "SIGKILL"));
    case "worker-term":
      return [workerKill(rng, "SIGTERM")];
    case "worker-pause":
      return [{ kind: "pause-worker", at: at(rng), target: rng.nextUint32(), pauseMs: ms(rng, 200, 4000) }];
    case "server-kill":
      return [{ kind: "kill-server", signal: "SIGKILL", at: at(rng), restartAfterMs: ms(rng, 0, 3000) }];
    case "server-term":
      return [{ kind: "kill-server", signal: "SIGTERM", at: at(rng), restartAfterMs: ms(rng, 0, 3000) }];
    case "server-pause":
      return [{ kind: "pause-server", at: at(rng), pauseMs: ms(rng, 200, 3000) }];
    case "scale":
      return [scale(rng)];
    case "checkpoint-damage": {
      const damage: CheckpointDamage =
        rng.nextInt(2) === 0
          ? { kind: "truncate", fraction: rng.nextFloat() }
          : { kind: "flip", region: rng.nextInt(2) === 0 ? "header" : "data", fraction: rng.nextFloat(), xor: 1 + rng.nextInt(255) };
      return [{ kind: "damage-checkpoint", at: at(rng, 0.2, LAST_AT), damage, restartAfterMs: ms(rng, 0, 1000) }];
    }
    case "finish-then-kill":
      // 0–1 s, most often close to 0 (1000 × u³: under 50 ms in 37% of runs): a server that tells
      // workers "done" only once everything is trained completes tens of milliseconds after the
      // first worker finishes, and a uniform delay would almost always come too late to land.
      return [{ kind: "finish-then-kill", afterFinishMs: Math.round(1000 * rng.nextFloat() ** 3), restartAfterMs: ms(rng, 0, 3000), restartAfterComplete: rng.nextInt(2) === 0 }];
  }
}

/** `mixed`: 2–4 faults drawn from the other scenarios (at most one scale and one finish-then-kill: each is a phase of the run). */
function mixedFaults(rng: Random): Fault[] {
  const n = 2 + rng.nextInt(3);
  const faults: Fault[] = [];
  const once = new Set<Scenario>(["scale", "finish-then-kill"]);
  const used = new Set<Scenario>();
  const pool = SCENARIOS.filter((s) => s !== "mixed");
  while (faults.length < n) {
    const scenario = pool[rng.nextInt(pool.length)]!;
    if (once.has(scenario) && used.has(scenario)) continue;
    used.add(scenario);
    // worker-kill may draw two kills; in a mix each drawn scenario brings one fault.
    faults.push(faultsOf(scenario, rng)[0]!);
  }
  return faults;
}

/** The plan of one run: a pure function of (index, scenario, mode, seed). */
export function planRun(index: number, scenario: Scenario, mode: Mode, seed: number): RunPlan {
  const rng = new Random(seed);
  const dataSeed = deriveSeed(seed, 0xda7a) & 0x7fffffff;
  const faults = scenario === "mixed" ? mixedFaults(rng) : faultsOf(scenario, rng);
  return { index, scenario, mode, seed, dataSeed, faults };
}

/**
 * The seed of run `index` of a suite: run 0 uses the suite's seed itself, so that a run replays
 * alone as `SEED=<its seed> RUNS=1`; later runs derive theirs from it.
 */
export function runSeed(suiteSeed: number, index: number): number {
  return index === 0 ? suiteSeed >>> 0 : deriveSeed(suiteSeed, index);
}

/**
 * Which (scenario, mode) run `index` covers. Run i takes scenario i mod S and, in round
 * k = floor(i / S), mode (scenario + k) mod M: the first S runs cover every scenario once with the
 * modes rotating, and every S × M consecutive runs cover each (scenario, mode) pair exactly once.
 */
export function pairOf<S, M>(index: number, scenarios: readonly S[], modes: readonly M[]): { scenario: S; mode: M } {
  const s = index % scenarios.length;
  const k = Math.floor(index / scenarios.length);
  return { scenario: scenarios[s]!, mode: modes[(s + k) % modes.length]! };
}

/** The plans of a whole suite. */
export function planSuite(suiteSeed: number, runs: number, scenarios: readonly Scenario[], modes: readonly Mode[]): RunPlan[] {
  return Array.from({ length: runs }, (_, i) => {
    const { scenario, mode } = pairOf(i, scenarios, modes);
    return planRun(i, scenario, mode, runSeed(suiteSeed, i));
  });
}

const pct = (f: number) => `${Math.round(f * 100)}%`;
const secs = (m: number) => `${(m / 1000).toFixed(1)} s`;

/** One fault in words, e.g. "SIGKILL a worker at 41%, replaced after 1.3 s". */
export function describeFault(f: Fault): string {
  switch (f.kind) {
    case "kill-worker":
      return `${f.signal} a worker at ${pct(f.at)}, ${f.replaceAfterMs === null ? "never replaced" : `replaced after ${secs(f.replaceAfterMs)}`}`;
    case "pause-worker":
      return `SIGSTOP a worker at ${pct(f.at)} for ${secs(f.pauseMs)}`;
    case "kill-server":
      return `${f.signal} the server at ${pct(f.at)}, restart after ${secs(f.restartAfterMs)}`;
    case "pause-server":
      return `SIGSTOP the server at ${pct(f.at)} for ${secs(f.pauseMs)}`;
    case "scale": {
      const fates = f.killRetiredAfterMs.map((k) => (k === null ? "stops" : `SIGKILL after ${secs(k)}`)).join("/");
      return `scale to ${f.up} at ${pct(f.upAt)}, to ${f.down} ${f.downAfterFinish ? "when the first worker finished" : `at ${pct(f.downAt)}`} (retired: ${fates})`;
    }
    case "damage-checkpoint":
      return (
        `SIGKILL the server at ${pct(f.at)}, ` +
        (f.damage.kind === "truncate"
          ? `truncate the newest checkpoint to ${pct(f.damage.fraction)}`
          : `XOR 0x${f.damage.xor.toString(16)} into the newest checkpoint's ${f.damage.region} at ${pct(f.damage.fraction)}`) +
        `, restart after ${secs(f.restartAfterMs)}`
      );
    case "finish-then-kill":
      return `SIGKILL the server ${secs(f.afterFinishMs)} after the first worker finished, restart after ${secs(f.restartAfterMs)}${f.restartAfterComplete ? ", restart again once complete" : ""}`;
  }
}
