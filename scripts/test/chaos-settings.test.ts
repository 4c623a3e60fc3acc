/**
 * `make chaos` settings (scripts/lib/chaos/settings.ts): defaults, lists of modes and scenarios,
 * and bad input refused with one line naming every bad variable, exit code 2.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import t from "tap";
import { ConfigError } from "../../common/src/env.ts";
import { MODES, SCENARIOS } from "../lib/chaos/plan.ts";
import { oneLine, parseSettings } from "../lib/chaos/settings.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const script = fileURLToPath(new URL("../chaos.ts", import.meta.url));

t.test("defaults: a random seed, 12 runs, every mode and scenario, runs/chaos-<time>", async (t) => {
  const s = parseSettings({}, "/repo", new Date("2026-12-05T10:20:30.456Z"));
  t.ok(s.randomSeed && Number.isInteger(s.seed) && s.seed >= 0 && s.seed < 2 ** 32, `a random 32-bit seed (${s.seed})`);
  t.equal(s.runs, 12);
  t.same(s.modes, [...MODES]);
  t.same(s.scenarios, [...SCENARIOS], "every scenario but the clean control");
  t.equal(s.resultsDir, "/repo/runs/chaos-2026-12-05T10-20-30-456Z");
  t.equal(s.keep, false);
  t.equal(s.runTimeoutS, 150);
});

t.test("given values", async (t) => {
  const s = parseSettings({ SEED: "4294967295", RUNS: "60", MODE: "ssp", SCENARIO: "scale, server-kill", RESULTS_DIR: "/tmp/x", KEEP: "1", RUN_TIMEOUT_S: "90" }, "/repo");
  t.same(
    { seed: s.seed, randomSeed: s.randomSeed, runs: s.runs, modes: s.modes, scenarios: s.scenarios, dir: s.resultsDir, keep: s.keep, bound: s.runTimeoutS },
    { seed: 4294967295, randomSeed: false, runs: 60, modes: ["ssp"], scenarios: ["scale", "server-kill"], dir: "/tmp/x", keep: true, bound: 90 },
  );
  t.same(parseSettings({ MODE: "all", SCENARIO: "clean" }, "/repo").scenarios, ["clean"], "the clean control only when named");
  t.same(parseSettings({ MODE: "sync,async" }, "/repo").modes, ["sync", "async"]);
});

t.test("bad values: every bad variable named, on one line", async (t) => {
  const bad = { SEED: "-1", RUNS: "0", MODE: "fast", SCENARIO: "worker-kill,nope", KEEP: "maybe" };
  let err: unknown;
  try {
    parseSettings(bad, "/repo");
  } catch (e) {
    err = e;
  }
  t.type(err, ConfigError);
  const line = oneLine(err as ConfigError);
  t.notMatch(line, /\n/, "one line");
  for (const key of Object.keys(bad)) t.match(line, new RegExp(`${key}=`), `names ${key}`);
  t.match(line, /SCENARIO="worker-kill,nope": accepts all, or one or more of worker-kill, .*clean/, "says which scenarios exist");
});

t.test("the harness refuses bad settings with exit code 2 and one line, before starting anything", async (t) => {
  const r = spawnSync(process.execPath, [script], { cwd: root, env: { ...process.env, RUNS: "0", MODE: "fast" }, encoding: "utf8", timeout: 30_000 });
  t.equal(r.status, 2, "exit code 2");
  t.equal(r.stdout, "", "nothing on stdout");
  t.match(r.stderr, /^chaos: invalid settings: RUNS="0": .*; MODE="fast": accepts all, or one or more of sync, async, ssp/);
  t.equal(r.stderr.trimEnd().split("\n").length, 1, "one line");
});
