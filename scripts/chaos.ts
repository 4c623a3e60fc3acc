/**
 * `make chaos`: a seeded chaos suite with real processes. Each run trains the synthetic job with a
 * parameter server and three workers while faults from a seeded plan hit them — SIGKILL, SIGTERM
 * and SIGSTOP/SIGCONT of workers and of the server at random points of the training, replacements
 * after random delays or never, scaling up and down, damaged checkpoints, a server killed as the
 * run finishes — then checks that the run completed within its bound with exact accounting and a
 * model of the expected quality (scripts/lib/chaos/run.ts).
 *
 * Settings (environment): SEED (random when unset; printed), RUNS (12), MODE (sync|async|ssp|all,
 * default all), SCENARIO (one name, a comma list, or all), RESULTS_DIR (runs/chaos-<time>/), KEEP
 * (1: keep passing runs' logs too), RUN_TIMEOUT_S (150: a run's bound). Runs are spread evenly over
 * every (scenario, mode) pair; run 1 uses SEED itself, so any run replays alone with
 * `make chaos SEED=<its seed> RUNS=1 SCENARIO=<scenario> MODE=<mode>`.
 *
 * Prints one line per run, a scenario × mode table, writes RESULTS_DIR/results.json, and ends with
 * `CHAOS_JSON: {"seed","runs","completed","exact","hung","failed_runs":[...]}`. Exits 0 iff every
 * run completed exactly, 1 otherwise, 2 on bad settings, 130 when interrupted.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../common/src/env.ts";
import { killEveryChild } from "./lib/chaos/cluster.ts";
import { JOB, MAX_SHORTFALL, TOTAL_GRADIENTS } from "./lib/chaos/job.ts";
import { planSuite } from "./lib/chaos/plan.ts";
import { chaosJson, runLine, table } from "./lib/chaos/report.ts";
import { runOne, type RunResult } from "./lib/chaos/run.ts";
import { oneLine, parseSettings, type Settings } from "./lib/chaos/settings.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

let settings: Settings;
try {
  settings = parseSettings(process.env, root);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`chaos: ${oneLine(err)}\n`);
  process.exit(2);
}

const results: RunResult[] = [];
const plans = planSuite(settings.seed, settings.runs, settings.scenarios, settings.modes);

function finish(): number {
  const summary = chaosJson(settings.seed, settings.runs, results);
  writeFileSync(
    join(settings.resultsDir, "results.json"),
    `${JSON.stringify({ ...summary, settings: { ...settings, job: JOB, max_shortfall: MAX_SHORTFALL }, results }, null, 2)}\n`,
  );
  console.log("");
  console.log(table(results, settings.scenarios, settings.modes));
  console.log("");
  const failing = results.filter((r) => !r.exact);
  for (const r of failing) console.log(`chaos: kept ${r.dir} (replay: make chaos SEED=${r.seed} RUNS=1 SCENARIO=${r.scenario} MODE=${r.mode})`);
  console.log(`chaos: ${summary.exact}/${settings.runs} runs exact, ${summary.completed} completed, ${summary.hung} hung; results in ${join(settings.resultsDir, "results.json")}`);
  console.log(`CHAOS_JSON: ${JSON.stringify(summary)}`);
  return summary.completed === settings.runs && summary.exact === settings.runs ? 0 : 1;
}

let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    interrupted = true;
    killEveryChild();
    console.log(`\nchaos: ${signal}: every process killed; stopping after ${results.length} of ${settings.runs} runs`);
    finish();
    process.exit(130);
  });
}

mkdirSync(settings.resultsDir, { recursive: true });
console.log(
  `chaos: seed ${settings.seed}${settings.randomSeed ? " (random; set SEED to repeat)" : ""}, ${settings.runs} runs over ` +
    `${settings.scenarios.join(", ")} × ${settings.modes.join(", ")}; each run: ${JOB.workers} workers, ${JOB.epochs} epochs × ` +
    `${JOB.trainExamples} examples (${TOTAL_GRADIENTS} gradients), bound ${settings.runTimeoutS} s; results in ${settings.resultsDir}`,
);
let code = 1;
try {
  for (const plan of plans) {
    if (interrupted) break;
    const result = await runOne(plan, { resultsDir: settings.resultsDir, boundMs: settings.runTimeoutS * 1000, keep: settings.keep });
    results.push(result);
    console.log(runLine(result, settings.runs));
  }
  code = finish();
} finally {
  killEveryChild();
}
process.exit(code);
