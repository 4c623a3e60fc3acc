/**
 * The server killed mid-training and restarted: workers retry with backoff, reconnect, training
 * resumes from the checkpoint and finishes, and no gradient is lost or applied twice.
 *
 * How "exactly once" is checked: every slot owns 8000 examples = 250 batches of 32 per epoch, so
 * over 2 epochs exactly 500 gradients per slot must be applied — the checkpoint's count plus what
 * came after it — and in sync mode each step averages both slots, so the final version is 500.
 * A gradient applied twice, or a batch skipped, changes one of those numbers.
 */
import t from "tap";
import { exitWithin, onLoopback, startProcess } from "../helpers/processes.ts";
import { checkpointVersions, newestCheckpoint } from "../helpers/checkpoints.ts";
import { serverWithTrainingWorker, startAnsweringServer, startServerForStatus } from "../helpers/server-status.ts";
import { waitUntil } from "../helpers/wait.ts";

const GRADIENTS_PER_SLOT = 2 * (8000 / 32);

for (const mode of ["sync", "async"] as const) {
  t.test(`${mode}: SIGKILL the server, restart it, and the run finishes from the checkpoint`, async (t) => {
    const dir = t.testdir();
    const { port, env: serverEnv } = await onLoopback({
      TOTAL_WORKERS_EXPECTED: "2",
      SERVER_MODE: mode,
      CHECKPOINT_URI: `${dir}/checkpoints`,
      CHECKPOINT_EVERY_STEPS: "60",
      CHECKPOINT_EVERY_SECONDS: "0",
      LEASE_MS: "2000",
    });
    const workerEnv = { PARAMETER_SERVER_ADDRESS: `127.0.0.1:${port}`, EPOCHS: "2", TRAIN_EXAMPLES: "16000", TEST_EXAMPLES: "1000", CONNECT_TIMEOUT_MS: "60000" };

    const first = await startAnsweringServer(t, serverEnv);
    const workers = [0, 1].map(() => startProcess(t, "worker/src/main.ts", workerEnv));
    const checkpoints = `${dir}/checkpoints`;
    await waitUntil(() => checkpointVersions(checkpoints).includes(120), "the checkpoint of version 120 on disk", { timeoutMs: 60_000 });
    first.child.kill("SIGKILL");
    t.equal(await first.exit, 137, "the first server was killed with SIGKILL");

    // The workers notice and retry while no server is listening.
    await Promise.all(workers.map((w) => w.waitFor(/lost the session/, 20_000)));
    const { server: second, first: resumed } = await startServerForStatus(t, serverEnv);
    t.equal(resumed.version, newestCheckpoint(checkpoints), `the restarted server resumed from the newest checkpoint (version ${resumed.version}), not a new run`);

    const codes = await Promise.all(workers.map((w) => exitWithin(w, 120_000)));
    t.same(codes, [0, 0], "both workers finished with exit code 0");
    t.equal(await exitWithin(second, 20_000), 0, "the server exited 0 when the run completed");

    const summary = second.metrics()!;
    t.equal(summary.run_complete, true, "the run is complete");
    t.same(summary.gradients_per_slot, [GRADIENTS_PER_SLOT, GRADIENTS_PER_SLOT], `every slot had exactly ${GRADIENTS_PER_SLOT} gradients applied: none lost, none twice`);
    if (mode === "sync") t.equal(summary.version, GRADIENTS_PER_SLOT, "sync: one version per step, every step with both workers");
    else t.equal(summary.version, 2 * GRADIENTS_PER_SLOT, "async: one version per gradient");
    t.match(String(summary.resumed_from), /^ckpt-\d{10}\.safetensors$/, "the summary names the checkpoint it resumed from");
    for (const w of workers) {
      const m = w.metrics()!;
      t.ok(Number(m.rejoins) >= 1, `worker ${String(m.worker_id)} re-registered after the restart`);
      t.ok(Number(m.final_test_accuracy) > 0.6, `worker ${String(m.worker_id)} still learned (test accuracy ${String(m.final_test_accuracy)})`);
    }
    t.ok(second.lines.some((l) => /exported the model/.test(l)), "the final model was exported");
  });
}

t.test("SIGTERM: the server stops accepting work, saves a checkpoint and exits 0", async (t) => {
  const dir = t.testdir();
  const { port, env: serverEnv } = await onLoopback({
    TOTAL_WORKERS_EXPECTED: "1",
    CHECKPOINT_URI: `${dir}/checkpoints`,
    CHECKPOINT_EVERY_STEPS: "0",
    CHECKPOINT_EVERY_SECONDS: "0",
  });
  const { server, worker } = await serverWithTrainingWorker(t, serverEnv, { PARAMETER_SERVER_ADDRESS: `127.0.0.1:${port}`, EPOCHS: "50", CONNECT_TIMEOUT_MS: "3000" });
  const sentAt = Date.now();
  server.child.kill("SIGTERM");
  t.equal(await exitWithin(server, 20_000), 0, "the server exited 0 after SIGTERM");
  t.ok(Date.now() - sentAt < 10_000, "well within a 120 s stop timeout");
  const saved = server.lines.find((l) => /checkpoint \(SIGTERM\): version \d+/.test(l));
  t.ok(saved, "it wrote a checkpoint on the way out");
  const summary = server.metrics()!;
  t.match(saved ?? "", new RegExp(`version ${String(summary.version)},`), "the checkpoint holds the last version the server reached");
  t.equal(summary.run_complete, false, "the run was not complete");
  // The worker cannot reach a server any more: it retries for its bounded time, then fails clearly.
  t.not(await exitWithin(worker, 30_000), 0, "the orphaned worker gives up with a non-zero code");
});
