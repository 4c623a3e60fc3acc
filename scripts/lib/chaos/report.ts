/**
 * What the suite prints and writes: one line per run as it ends, a scenario × mode table, the
 * results file, and the last line, `CHAOS_JSON: {...}`, that scripts and CI read.
 */
import type { Mode, Scenario } from "./plan.ts";
import type { RunResult } from "./run.ts";

export interface ChaosJson {
  seed: number;
  runs: number;
  completed: number;
  exact: number;
  hung: number;
  failed_runs: { scenario: string; mode: string; seed: number; why: string }[];
}

/** One line for a finished run. */
export function runLine(r: RunResult, total: number): string {
  const injected = r.faults.filter((f) => f.injected).length;
  const verdict = { passed: "PASSED", inexact: "INEXACT", failed: "FAILED", hung: "HUNG" }[r.outcome];
  const accuracy = r.accuracy === null ? "" : `, accuracy ${(r.accuracy * 100).toFixed(1)}%`;
  const head =
    `chaos: run ${r.index + 1}/${total} ${r.scenario}/${r.mode} seed ${r.seed}: ${injected}/${r.faults.length} faults injected` +
    `${r.faults.length > 0 ? ` (${r.faults.map((f) => f.description + (f.injected ? "" : " [not injected]")).join("; ")})` : ""}` +
    ` — ${verdict} in ${r.duration_s.toFixed(1)} s${accuracy}`;
  if (r.outcome === "passed") return head;
  return `${head}\n  why: ${r.why.join("\n       ")}\n  logs: ${r.dir}`;
}

/** Passed/runs per scenario and mode, with the hung and failed counts where there are any. */
export function table(results: readonly RunResult[], scenarios: readonly Scenario[], modes: readonly Mode[]): string {
  const cell = (rs: readonly RunResult[]) => {
    if (rs.length === 0) return "-";
    const n = (o: RunResult["outcome"]) => rs.filter((r) => r.outcome === o).length;
    const extra = [n("hung") > 0 ? `${n("hung")} hung` : "", n("failed") > 0 ? `${n("failed")} failed` : "", n("inexact") > 0 ? `${n("inexact")} inexact` : ""].filter(Boolean);
    return `${n("passed")}/${rs.length}${extra.length > 0 ? ` (${extra.join(", ")})` : ""}`;
  };
  const width = Math.max(8, ...scenarios.map((s) => s.length));
  const cols = modes.map((m) => Math.max(28, m.length));
  const rows = [
    `${"scenario".padEnd(width)}  ${modes.map((m, i) => m.padEnd(cols[i]!)).join("  ")}`,
    ...scenarios.map((s) => `${s.padEnd(width)}  ${modes.map((m, i) => cell(results.filter((r) => r.scenario === s && r.mode === m)).padEnd(cols[i]!)).join("  ")}`),
  ];
  return rows.map((r) => r.trimEnd()).join("\n");
}

export function chaosJson(seed: number, runs: number, results: readonly RunResult[]): ChaosJson {
  return {
    seed,
    runs,
    completed: results.filter((r) => r.completed).length,
    exact: results.filter((r) => r.exact).length,
    hung: results.filter((r) => r.hung).length,
    failed_runs: results.filter((r) => !r.exact).map((r) => ({ scenario: r.scenario, mode: r.mode, seed: r.seed, why: r.why.join("; ") })),
  };
}
