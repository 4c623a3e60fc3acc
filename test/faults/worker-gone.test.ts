/**
 * Workers that are gone for good. A worker SIGKILLed and never replaced: once its lease and the
 * replacement grace have passed, the rest of its data goes to the others, who take it over before
 * they exit; every epoch is still trained exactly once and the run completes. And when no worker is
 * left at all, the server does not wait forever: after NO_WORKERS_TIMEOUT_MS it checkpoints and
 * exits 3, and a server started again on the checkpoint continues.
 */
import t from "tap";
import type { SlotStatus } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { exitWithin, onLoopback, startProcess } from "../helpers/processes.ts";
import { newestCheckpoint } from "../helpers/checkpoints.ts";
import { ServerStatus, SlotState, serverWithTrainingWorker, startAnsweringServer, startServerForStatus } from "../helpers/server-status.ts";
import { assertExactRun, workerEnvFor } from "../helpers/exact-run.ts";

const RUN = { epochs: 3, trainExamples: 9600, batchSize: 32 };
const workerEnv = (port: number) => workerEnvFor(RUN, `127.0.0.1:${port}`);

for (const mode of ["sync", "async", "ssp"] as const) {
  t.test(`${mode}: a worker killed and never replaced; the others train its data and the run completes`, async (t) => {
    const { port, env: serverEnv } = await onLoopback({
      TOTAL_WORKERS_EXPECTED: "3",
      SERVER_MODE: mode,
      LEASE_MS: "1000",
      REPLACEMENT_GRACE_MS: "1000",
    });
    const status = new ServerStatus(`127.0.0.1:${port}`);
    const server = await startAnsweringServer(t, serverEnv, status);
    const workers = [0, 1, 2].map(() => startProcess(t, "worker/src/main.ts", workerEnv(port)));
    // The first worker training epoch 1 is killed: on a busy machine a worker may start so late that
    // its slot was given up already (lease plus grace) and it begins at epoch 2.
    const inEpoch1 = (x: SlotStatus) => x.state === SlotState.ACTIVE && x.pushes >= 1 && x.position?.epoch === 0 && workers.some((w) => x.workerLabel === `pid ${w.pid}`);
    const training = (await status.until((s) => s.slots.some(inEpoch1), "a worker training epoch 1", 60_000)).slots.find(inEpoch1)!;
    const victim = workers.find((w) => training.workerLabel === `pid ${w.pid}`)!;
    const slot = training.slot;
    victim.child.kill("SIGKILL");
    t.equal(await victim.exit, 137, `slot ${slot}'s worker was killed, and nobody starts another`);

    await status.until((s) => s.slots[slot]?.abandoned === true, `slot ${slot} abandoned (no replacement within REPLACEMENT_GRACE_MS)`, 30_000);
    t.pass("after its lease and the grace, the server hands its data to the others");
    const survivors = workers.filter((w) => w !== victim);
    t.same(await Promise.all(survivors.map((w) => exitWithin(w, 120_000))), [0, 0], "the two others finished and exited 0");
    t.ok(
      survivors.some((w) => w.lines.some((l) => new RegExp(`taking over from batch \\d+ the part planned for slot ${slot} `).test(l))),
      "a survivor took over the dead worker's part",
    );
    t.equal(await exitWithin(server, 20_000), 0, "the server exited 0");
    assertExactRun(t, server.metrics(), { ...RUN, mode });
  });
}

t.test("no worker left: the server checkpoints and exits 3 after NO_WORKERS_TIMEOUT_MS; a restart continues", async (t) => {
  const NO_WORKERS_MS = 6000;
  const dir = t.testdir();
  const { port, env: serverEnv } = await onLoopback({
    TOTAL_WORKERS_EXPECTED: "1",
    SERVER_MODE: "async",
    LEASE_MS: "1000",
    REPLACEMENT_GRACE_MS: "500",
    // Counted from the server's start too: long enough for the first worker to start on a busy
    // machine (seen taking 3.5 s with three process-level test files at once).
    NO_WORKERS_TIMEOUT_MS: String(NO_WORKERS_MS),
    CHECKPOINT_URI: `${dir}/checkpoints`,
    CHECKPOINT_EVERY_STEPS: "0",
    CHECKPOINT_EVERY_SECONDS: "0",
  });
  const { server, worker } = await serverWithTrainingWorker(t, serverEnv, workerEnv(port));
  worker.child.kill("SIGKILL");
  const killedAt = Date.now();
  t.equal(await exitWithin(server, 30_000), 3, "the server gave up with exit code 3 instead of waiting forever");
  const waited = Date.now() - killedAt;
  t.ok(waited >= NO_WORKERS_MS, `it waited the lease plus NO_WORKERS_TIMEOUT_MS first (${waited} ms)`);
  t.ok(server.lines.some((l) => /no worker has been connected for \d+ s \(NO_WORKERS_TIMEOUT_MS\) and the run is not complete/.test(l)), "it said why");
  t.ok(server.lines.some((l) => /checkpoint \(no workers\): version \d+/.test(l)), "and saved its state first");
  t.equal(server.metrics()?.run_complete, false, "its summary says the run is not complete");
  t.ok(newestCheckpoint(`${dir}/checkpoints`) !== undefined, "a checkpoint is on disk");

  // Not the timeout under test: on a busy machine the new worker may take that long to start.
  const { server: again, first: resumed } = await startServerForStatus(t, { ...serverEnv, NO_WORKERS_TIMEOUT_MS: "60000" });
  t.equal(resumed.version, newestCheckpoint(`${dir}/checkpoints`), `the restarted server resumed from that checkpoint (version ${resumed.version})`);
  const replacement = startProcess(t, "worker/src/main.ts", workerEnv(port));
  t.equal(await exitWithin(replacement, 120_000), 0, "a new worker finished the run on the restarted server");
  t.equal(await exitWithin(again, 20_000), 0, "which then exited 0");
  assertExactRun(t, again.metrics(), { ...RUN, mode: "async" });
});
