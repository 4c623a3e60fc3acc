/**
 * The chaos suite's report (scripts/lib/chaos/report.ts): the CHAOS_JSON counts, the failing runs
 * it lists, a run's line and the scenario × mode table. Pure: no processes.
 */
import t from "tap";
import { chaosJson, runLine, table } from "../lib/chaos/report.ts";
import type { RunResult } from "../lib/chaos/run.ts";

function result(o: Partial<RunResult>): RunResult {
  return {
    index: 0,
    scenario: "worker-kill",
    mode: "sync",
    seed: 1,
    data_seed: 2,
    faults: [{ description: "SIGKILL a worker at 40%, never replaced", injected: true }],
    outcome: "passed",
    completed: true,
    exact: true,
    hung: false,
    why: [],
    duration_s: 12.3,
    accuracy: 0.85,
    bayes_accuracy: 0.89,
    accuracy_threshold: 0.81,
    server_instances: 1,
    worker_processes: 3,
    dir: null,
    summary: null,
    ...o,
  };
}

const results = [
  result({}),
  result({ index: 1, mode: "async", seed: 7, outcome: "hung", completed: false, exact: false, hung: true, why: ["not finished within 150 s"], dir: "/r/run-002" }),
  result({ index: 2, scenario: "scale", seed: 9, outcome: "inexact", exact: false, why: ["epoch 2 counted 19168 examples, expected 19200", "test accuracy 70.0% is below"] }),
  result({ index: 3, scenario: "scale", mode: "async", seed: 11, outcome: "failed", completed: false, exact: false, why: ["worker chaos-2 exited 1: boom"] }),
];

t.test("CHAOS_JSON counts completed, exact and hung runs and lists every run that was not exact", async (t) => {
  t.same(chaosJson(42, 4, results), {
    seed: 42,
    runs: 4,
    completed: 2,
    exact: 1,
    hung: 1,
    failed_runs: [
      { scenario: "worker-kill", mode: "async", seed: 7, why: "not finished within 150 s" },
      { scenario: "scale", mode: "sync", seed: 9, why: "epoch 2 counted 19168 examples, expected 19200; test accuracy 70.0% is below" },
      { scenario: "scale", mode: "async", seed: 11, why: "worker chaos-2 exited 1: boom" },
    ],
  });
});

t.test("a run's line: scenario, mode, seed, faults, outcome, duration; why and logs when it did not pass", async (t) => {
  t.equal(runLine(results[0]!, 4), "chaos: run 1/4 worker-kill/sync seed 1: 1/1 faults injected (SIGKILL a worker at 40%, never replaced) — PASSED in 12.3 s, accuracy 85.0%");
  t.match(runLine(results[1]!, 4), /^chaos: run 2\/4 worker-kill\/async seed 7: .* — HUNG in 12\.3 s.*\n  why: not finished within 150 s\n  logs: \/r\/run-002$/);
});

t.test("the table: passed/runs per scenario and mode, with what went wrong", async (t) => {
  t.equal(
    table(results, ["worker-kill", "scale"], ["sync", "async"]),
    [
      "scenario     sync                          async",
      "worker-kill  1/1                           0/1 (1 hung)",
      "scale        0/1 (1 inexact)               0/1 (1 failed)",
    ].join("\n"),
  );
});
