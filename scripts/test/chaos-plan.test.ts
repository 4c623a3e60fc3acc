/**
 * The chaos suite's fault plans (scripts/lib/chaos/plan.ts): a seed gives one plan, runs are spread
 * evenly over every (scenario, mode) pair, a run replays alone from its own seed, and every drawn
 * value stays in the ranges the scenarios promise. Pure: no processes.
 */
import t from "tap";
import { describeFault, MODES, pairOf, planRun, planSuite, runSeed, SCENARIOS, type Fault, type RunPlan } from "../lib/chaos/plan.ts";

const inRange = (x: number, lo: number, hi: number) => x >= lo && x <= hi;

t.test("the same seed gives the same fault plan; another seed another one", async (t) => {
  for (const scenario of SCENARIOS) {
    const a = planRun(0, scenario, "sync", 12345);
    const b = planRun(0, scenario, "sync", 12345);
    t.same(b, a, `${scenario}: identical plans from seed 12345`);
    const others = [1, 2, 3, 4, 5].map((s) => JSON.stringify(planRun(0, scenario, "sync", s).faults));
    t.ok(new Set(others).size > 1, `${scenario}: different seeds give different plans`);
  }
  t.same(planSuite(99, 30, SCENARIOS, MODES), planSuite(99, 30, SCENARIOS, MODES), "a whole suite is reproducible");
});

t.test("RUNS = 2 × pairs covers every (scenario, mode) pair exactly twice", async (t) => {
  const plans = planSuite(7, 2 * SCENARIOS.length * MODES.length, SCENARIOS, MODES);
  const counts = new Map<string, number>();
  for (const p of plans) counts.set(`${p.scenario}/${p.mode}`, (counts.get(`${p.scenario}/${p.mode}`) ?? 0) + 1);
  t.equal(counts.size, SCENARIOS.length * MODES.length, "all 30 pairs appear");
  t.ok([...counts.values()].every((n) => n === 2), "each exactly twice");
  t.equal(new Set(plans.map((p) => p.seed)).size, plans.length, "every run has its own seed");
});

t.test("the first runs cover every scenario once, modes rotating; a subset of modes or scenarios is spread too", async (t) => {
  const first = planSuite(7, SCENARIOS.length, SCENARIOS, MODES);
  t.same(first.map((p) => p.scenario), [...SCENARIOS], "runs 1..10: each scenario once");
  t.same(first.map((p) => p.mode), SCENARIOS.map((_, i) => MODES[i % 3]), "modes rotate sync, async, ssp");
  const pairs = Array.from({ length: 4 }, (_, i) => pairOf(i, ["scale", "mixed"], ["async", "ssp"]));
  t.same(pairs, [
    { scenario: "scale", mode: "async" },
    { scenario: "mixed", mode: "ssp" },
    { scenario: "scale", mode: "ssp" },
    { scenario: "mixed", mode: "async" },
  ], "2 scenarios × 2 modes in 4 runs: every pair once");
});

t.test("any run replays alone: SEED=<its seed> RUNS=1 SCENARIO=<s> MODE=<m> draws the same faults", async (t) => {
  t.equal(runSeed(4242, 0), 4242, "run 1 uses the suite's seed itself");
  for (const p of planSuite(4242, 30, SCENARIOS, MODES)) {
    const [replay] = planSuite(p.seed, 1, [p.scenario], [p.mode]);
    t.same({ ...replay, index: p.index }, p, `run ${p.index + 1} (${p.scenario}/${p.mode}) replays from seed ${p.seed}`);
  }
});

/** What is out of range in `f`, if anything. */
function outOfRange(f: Fault): string | undefined {
  const bad = (cond: boolean, what: string) => (cond ? undefined : `${what}: ${describeFault(f)}`);
  switch (f.kind) {
    case "kill-worker":
      return bad(inRange(f.at, 0.05, 0.85), "fires between 5% and 85% of the run") ?? bad(f.replaceAfterMs === null || inRange(f.replaceAfterMs, 0, 4000), "replaced after 0–4 s or never");
    case "pause-worker":
      return bad(inRange(f.pauseMs, 200, 4000), "paused 0.2–4 s");
    case "kill-server":
      return bad(inRange(f.restartAfterMs, 0, 3000), "restarted after 0–3 s");
    case "pause-server":
      return bad(inRange(f.pauseMs, 200, 3000), "paused 0.2–3 s");
    case "scale":
      return bad([4, 5].includes(f.up) && [2, 3].includes(f.down), "up to 4–5, down to 2–3") ?? bad(f.upAt < f.downAt && f.downAt <= 0.85, "down after up, before the end");
    case "damage-checkpoint":
      return bad(inRange(f.damage.fraction, 0, 1) && (f.damage.kind === "truncate" || (inRange(f.damage.xor, 1, 255) && ["header", "data"].includes(f.damage.region))), "a cut, or a non-zero XOR into the header or the data");
    case "finish-then-kill":
      return bad(inRange(f.afterFinishMs, 0, 1000), "killed 0–1 s after the first worker finished");
  }
}

t.test("drawn values stay in the scenarios' ranges", async (t) => {
  const plans: RunPlan[] = planSuite(1, 600, SCENARIOS, MODES);
  const problems: string[] = [];
  for (const p of plans) {
    const where = `run ${p.index + 1} ${p.scenario}`;
    if (!(p.dataSeed >= 0 && p.dataSeed < 2 ** 31)) problems.push(`${where}: data seed ${p.dataSeed} does not fit the processes' SEED`);
    const n = p.faults.length;
    if (p.scenario === "worker-kill" && !(n === 1 || n === 2)) problems.push(`${where}: ${n} kills, expected 1–2`);
    if (p.scenario === "mixed") {
      if (!inRange(n, 2, 4)) problems.push(`${where}: ${n} faults, expected 2–4`);
      for (const kind of ["scale", "finish-then-kill"]) if (p.faults.filter((f) => f.kind === kind).length > 1) problems.push(`${where}: more than one ${kind}`);
    }
    if (p.scenario !== "worker-kill" && p.scenario !== "mixed" && n !== 1) problems.push(`${where}: ${n} faults, expected 1`);
    for (const f of p.faults) {
      const problem = outOfRange(f);
      if (problem !== undefined) problems.push(`${where}: ${problem}`);
    }
  }
  t.same(problems, [], `600 plans: fault counts and every drawn value within its scenario's range`);
  const kills = plans.flatMap((p) => p.faults).filter((f) => f.kind === "kill-worker");
  const never = kills.filter((f) => f.replaceAfterMs === null).length / kills.length;
  t.ok(inRange(never, 0.25, 0.42), `about 1/3 of killed workers are never replaced (${never.toFixed(2)} of ${kills.length})`);
  const mixedKinds = new Set(plans.filter((p) => p.scenario === "mixed").flatMap((p) => p.faults.map((f) => `${f.kind}${"signal" in f ? f.signal : ""}`)));
  t.equal(mixedKinds.size, 9, `mixed draws from every other scenario (${[...mixedKinds].join(", ")})`);
});
