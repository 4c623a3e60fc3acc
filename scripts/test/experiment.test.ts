/**
 * `make experiment` (scripts/experiment.ts) end to end on a tiny matrix: real run-local jobs, then
 * one results JSON per run, the combined experiment.json and the PNG charts.
 */
import t from "tap";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { exitWithin, runNode, startNode } from "../../test/helpers/processes.ts";

t.test("sync and async with 1 worker: per-run JSON with per-epoch history, and charts", async (t) => {
  const dir = t.testdir();
  const env = {
    EXPERIMENT_MODES: "sync,async",
    EXPERIMENT_WORKERS: "1",
    EPOCHS: "2",
    TRAIN_EXAMPLES: "2000",
    TEST_EXAMPLES: "500",
    RESULTS_DIR: dir,
    STATUS_INTERVAL_MS: "0",
    TTA_TARGET: "0.25",
  };
  const { code, output } = await runNode("scripts/experiment.ts", { env });
  t.equal(code, 0, "experiment exits 0");
  if (code !== 0) t.comment(output.slice(-3000));
  for (const label of ["sync-1w", "async-1w"]) {
    const result = JSON.parse(readFileSync(join(dir, `${label}.json`), "utf8"));
    t.equal(result.workers, 1, `${label}: 1 worker`);
    t.equal(result.per_epoch.length, 2, `${label}: an evaluation per epoch`);
    t.ok(result.per_epoch.every((e: { t_s: number; test_accuracy: number }) => e.t_s > 0 && e.test_accuracy > 0.1), `${label}: timed, plausible accuracies`);
    t.ok(result.total_samples_per_s > 0, `${label}: throughput measured`);
    t.ok(existsSync(join(dir, result.run_dir, "worker-0.log")), `${label}: the run's logs are kept`);
  }
  const summary = JSON.parse(readFileSync(join(dir, "experiment.json"), "utf8"));
  t.same(summary.summary.map((r: { run: string }) => r.run), ["sync-1w", "async-1w"], "experiment.json lists the runs in order");
  const png = Buffer.from([0x89, 0x50, 0x4e, 0x47]);
  const tta = /^TTA_JSON: (.*)$/m.exec(output);
  t.ok(tta, "a TTA_JSON line");
  const reached = JSON.parse(tta?.[1] ?? "{}") as { target: number; seconds: Record<string, number | null> };
  t.equal(reached.target, 0.25, "for the target asked");
  for (const label of ["sync-1w", "async-1w"]) {
    const epochs = JSON.parse(readFileSync(join(dir, `${label}.json`), "utf8")).per_epoch as { t_s: number; test_accuracy: number }[];
    const first = epochs.find((e) => e.test_accuracy >= 0.25);
    t.ok(first, `${label}: reached 25% (${epochs.map((e) => e.test_accuracy).join(", ")})`);
    t.equal(reached.seconds[label], Math.round(first!.t_s * 100) / 100, `${label}: the time of its first evaluation at or above 25%`);
  }
  t.same(summary.time_to_accuracy, reached.seconds, "experiment.json has them too");
  for (const chart of ["test-accuracy.png", "test-loss.png", "throughput.png", "final-accuracy.png", "wall-time.png", "time-to-accuracy.png"]) {
    const bytes = readFileSync(join(dir, chart));
    t.ok(bytes.subarray(0, 4).equals(png) && bytes.length > 5000, `${chart} is a PNG image`);
  }
  t.match(output, /sync-1w .*%/, "the summary table is printed");
});

t.test("a bad matrix is refused with a clear message", async (t) => {
  const p = startNode(t, "scripts/experiment.ts", { env: { EXPERIMENT_MODES: "sync,fast" } });
  t.equal(await exitWithin(p, 60_000), 2, "exit code 2");
  t.match(p.stderr.join("\n"), /EXPERIMENT_MODES="sync,fast": .*a comma-separated list of sync, async, ssp/, "names the variable and what it accepts");
});
