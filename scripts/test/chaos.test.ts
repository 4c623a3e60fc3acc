/**
 * The chaos suite end to end (`make chaos`, scripts/chaos.ts) with real processes: one run of every
 * scenario, the modes rotating, must all complete with exact accounting and no hang; and an
 * interrupted suite kills every process it started.
 *
 * The seed is fixed so that CI replays the same plans; CHAOS_TEST_SEED=<n> tries others.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import t from "tap";
import { startNode } from "../../test/helpers/processes.ts";
import { SCENARIOS } from "../lib/chaos/plan.ts";
import { until } from "../lib/waiting.ts";

const SEED = process.env.CHAOS_TEST_SEED ?? "20261205";
/** A run's bound here: runs take 10–30 s on 2 busy cores; a hang is reported after this. */
const RUN_TIMEOUT_S = 90;

function chaosJson(output: string) {
  const lines = output.trimEnd().split("\n");
  const last = lines.at(-1) ?? "";
  return last.startsWith("CHAOS_JSON: ") ? (JSON.parse(last.slice("CHAOS_JSON: ".length)) as Record<string, unknown>) : undefined;
}

const runs = SCENARIOS.length;
t.test(`every scenario once (modes rotating), seed ${SEED}: all complete, exactly, none hangs`, { timeout: runs * (RUN_TIMEOUT_S + 30) * 1000 + 60_000 }, async (t) => {
  const dir = t.testdir();
  const h = startNode(t, "scripts/chaos.ts", { env: { SEED, RUNS: String(runs), MODE: "all", SCENARIO: "all", RESULTS_DIR: dir, KEEP: "", RUN_TIMEOUT_S: String(RUN_TIMEOUT_S) } });
  const code = await h.exit;
  const summary = chaosJson(h.output());
  t.ok(summary, "the last line is CHAOS_JSON");
  t.equal(summary?.runs, runs, `${runs} runs`);
  // The reasons go in the asserts' names: a CI log that keeps only the failing names still says why.
  const failed = (summary?.failed_runs as { scenario: string; mode: string; seed: number; why: string }[] | undefined) ?? [];
  const why = failed.length > 0 ? ` (not: ${failed.map((f) => `${f.scenario}/${f.mode} seed ${f.seed}: ${f.why}`).join(" | ")})` : "";
  t.equal(summary?.hung, 0, `no run hung${why}`);
  t.equal(summary?.completed, runs, `every run completed${why}`);
  t.equal(summary?.exact, runs, `every run's accounting was exact and its model good enough${why}`);
  t.equal(code, summary?.exact === runs ? 0 : 1, "exit code 0 exactly when every run was exact");
  if (summary?.exact !== runs) t.comment(h.output().slice(-6000));

  const results = JSON.parse(readFileSync(join(dir, "results.json"), "utf8")) as { results: { scenario: string; mode: string }[] };
  t.same(results.results.map((r) => r.scenario), [...SCENARIOS], "results.json has one run of each scenario");
  t.same([...new Set(results.results.map((r) => r.mode))].sort(), ["async", "ssp", "sync"], "in every mode");
});

t.test("SIGINT: the suite kills every process it started, reports, and exits 130", { timeout: 120_000 }, async (t) => {
  const dir = t.testdir();
  const h = startNode(t, "scripts/chaos.ts", { env: { SEED: "1", RUNS: "3", SCENARIO: "clean", MODE: "sync", RESULTS_DIR: dir, KEEP: "1" } });
  const events = join(dir, "run-001-clean-sync", "chaos-events.log");
  const started = () => (existsSync(events) ? [...readFileSync(events, "utf8").matchAll(/started (\S+) \(pid (\d+)\)/g)].map((m) => Number(m[2])) : []);
  t.ok(await until(() => started().length === 4, { timeoutMs: 60_000 }), "the server and 3 workers started");
  const pids = started();
  h.kill("SIGINT");
  let code: number | "still running" = "still running";
  void h.exit.then((c) => (code = c));
  await until(() => code !== "still running", { timeoutMs: 20_000 });
  t.equal(code, 130, "exit code 130, promptly");
  const alive = () =>
    pids.filter((pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    });
  // SIGKILL is final, but the kernel may take a moment to tear a process down.
  await until(() => alive().length === 0, { timeoutMs: 5_000 });
  t.same(alive(), [], "none of its processes is left running");
  t.match(chaosJson(h.output()), { runs: 3, completed: 0, exact: 0 }, "it still ends with CHAOS_JSON, counting the interrupted runs as not done");
});
