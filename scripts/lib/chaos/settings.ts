/**
 * `make chaos` settings, from the environment, validated with zod like the programs' own
 * (common/src/env.ts): SEED (random when unset), RUNS, MODE (sync|async|ssp|all), SCENARIO (one
 * name, a comma list, or all), RESULTS_DIR, KEEP, RUN_TIMEOUT_S.
 */
import { randomInt } from "node:crypto";
import { join } from "node:path";
import { z } from "zod";
import { boolVar, ConfigError, intVar, optionalIntVar, parseEnv, stringVar } from "../../../common/src/env.ts";
import { EXTRA_SCENARIOS, MODES, SCENARIOS, type Mode, type Scenario } from "./plan.ts";

const KNOWN_SCENARIOS: readonly string[] = [...SCENARIOS, ...EXTRA_SCENARIOS];

/** "all", or a comma-separated list of known names without repeats. */
function listVar<T extends string>(known: readonly string[], all: readonly T[], what: string) {
  return z
    .preprocess(
      (v) => (typeof v === "string" && v.trim() !== "" ? v : "all"),
      z
        .string()
        .transform((v) => v.split(",").map((s) => s.trim().toLowerCase()))
        .refine((names) => names.every((n) => n === "all" || known.includes(n)), `unknown ${what}`)
        .refine((names) => new Set(names).size === names.length, `a ${what} is named twice`)
        .transform((names) => (names.includes("all") ? [...all] : (names as T[]))),
    )
    .describe(`all, or one or more of ${known.join(", ")} separated by commas`);
}

const schema = z.object({
  SEED: optionalIntVar({ min: 0, max: 2 ** 32 - 1 }, "the suite's seed (unset: a random one, printed)"),
  RUNS: intVar({ min: 1, max: 100_000, default: 12 }),
  MODE: listVar<Mode>(MODES, MODES, "mode"),
  SCENARIO: listVar<Scenario>(KNOWN_SCENARIOS, SCENARIOS, "scenario"),
  RESULTS_DIR: stringVar("a directory path", ""),
  KEEP: boolVar(false),
  RUN_TIMEOUT_S: intVar({ min: 10, max: 86_400, default: 150 }),
});

export interface Settings {
  seed: number;
  /** Whether the seed was drawn (not given). */
  randomSeed: boolean;
  runs: number;
  modes: Mode[];
  scenarios: Scenario[];
  resultsDir: string;
  keep: boolean;
  runTimeoutS: number;
}

/** Parses the settings; throws ConfigError naming every bad variable. */
export function parseSettings(env: NodeJS.ProcessEnv, root: string, now = new Date()): Settings {
  const s = parseEnv(schema, { ...env, RESULTS_DIR: env.RESULTS_DIR || join(root, "runs", `chaos-${now.toISOString().replace(/[:.]/g, "-")}`) });
  return {
    seed: s.SEED ?? randomInt(0, 2 ** 32),
    randomSeed: s.SEED === undefined,
    runs: s.RUNS,
    modes: s.MODE,
    scenarios: s.SCENARIO,
    resultsDir: s.RESULTS_DIR,
    keep: s.KEEP,
    runTimeoutS: s.RUN_TIMEOUT_S,
  };
}

/** A ConfigError as one line. */
export function oneLine(err: ConfigError): string {
  return `invalid settings: ${err.problems.join("; ")}`;
}
