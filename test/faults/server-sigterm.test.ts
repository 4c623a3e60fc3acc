/**
 * A graceful server restart, as ECS does it (SIGTERM, then a new task at the same address), twice
 * in a run, in every mode. The server checkpoints and exits 0; its connections go away with
 * GOAWAY and refused streams; every worker retries until the new server answers, registers again
 * and continues. Every worker exits 0 and every epoch is trained exactly once.
 */
import t from "tap";
import { exitWithin, onLoopback, startProcess, type Proc } from "../helpers/processes.ts";
import { assertExactRun, workerEnvFor } from "../helpers/exact-run.ts";
import { newestCheckpoint } from "../helpers/checkpoints.ts";
import { ServerStatus, startAnsweringServer, startServerForStatus } from "../helpers/server-status.ts";

const RUN = { epochs: 3, trainExamples: 9600, batchSize: 32 };

for (const mode of ["sync", "async", "ssp"] as const) {
  t.test(`${mode}: SIGTERM the server twice mid-run and start it again; the workers outlive it`, async (t) => {
    const dir = t.testdir();
    const { port, env: serverEnv } = await onLoopback({
      TOTAL_WORKERS_EXPECTED: "3",
      SERVER_MODE: mode,
      LEASE_MS: "1000",
      CHECKPOINT_URI: `${dir}/checkpoints`,
      CHECKPOINT_EVERY_STEPS: "0",
      CHECKPOINT_EVERY_SECONDS: "0",
    });
    const workerEnv = workerEnvFor(RUN, `127.0.0.1:${port}`, { CONNECT_TIMEOUT_MS: "60000" });
    const status = new ServerStatus(`127.0.0.1:${port}`);
    let server: Proc = await startAnsweringServer(t, serverEnv, status);
    const workers = [0, 1, 2].map(() => startProcess(t, "worker/src/main.ts", workerEnv));
    for (const epoch of [1, 2]) {
      // Mid-epoch: some worker has pushed a gradient of this epoch (positions count epochs from 0).
      await status.until((s) => s.slots.some((x) => x.pushes > 0 && x.position?.epoch === epoch - 1 && x.position.batch > 0), `training in epoch ${epoch}`, 60_000);
      server.child.kill("SIGTERM");
      t.equal(await exitWithin(server, 20_000), 0, `SIGTERM in epoch ${epoch}: the server checkpointed and exited 0`);
      t.ok(server.lines.some((l) => /checkpoint \(SIGTERM\): version \d+/.test(l)), "it wrote a checkpoint on the way out");
      const restarted = await startServerForStatus(t, serverEnv, status);
      server = restarted.server;
      t.equal(restarted.first.version, newestCheckpoint(`${dir}/checkpoints`), `the restarted server resumed from the checkpoint of the one stopped (version ${restarted.first.version})`);
    }
    const codes = await Promise.all(workers.map((w) => exitWithin(w, 120_000)));
    t.same(codes, [0, 0, 0], "every worker outlived both restarts and exited 0");
    for (const w of workers) {
      t.notOk(
        w.lines.some((l) => /ERROR/.test(l)),
        `no worker error: ${w.lines.find((l) => /ERROR/.test(l)) ?? "none"}`,
      );
      t.ok(Number(w.metrics()?.rejoins) >= 1, `worker ${String(w.metrics()?.worker_id)} registered again after a restart`);
    }
    t.equal(await exitWithin(server, 20_000), 0, "the last server exited 0 once the run was complete");
    assertExactRun(t, server.metrics(), { ...RUN, mode });
  });
}
