/**
 * A worker process killed with SIGKILL mid-run, in each mode: the other one continues after the
 * lease, a replacement process takes the same slot and its data position, and the run finishes
 * with every batch's gradient applied exactly once.
 */
import t from "tap";
import { exitWithin, freePort, onLoopback, startProcess } from "../helpers/processes.ts";
import { ServerStatus, slotOfWorker, SlotState, startAnsweringServer, trainingAgainIn } from "../helpers/server-status.ts";

const GRADIENTS_PER_SLOT = 2 * (8000 / 32);

for (const mode of ["sync", "async", "ssp"] as const) {
  t.test(`${mode}: SIGKILL a worker, start a replacement, and the run completes`, async (t) => {
    const { port, env: serverEnv } = await onLoopback({
      TOTAL_WORKERS_EXPECTED: "2",
      SERVER_MODE: mode,
      LEASE_MS: "1000",
    });
    const status = new ServerStatus(`127.0.0.1:${port}`);
    const server = await startAnsweringServer(t, serverEnv, status);
    const env = { PARAMETER_SERVER_ADDRESS: `127.0.0.1:${port}`, EPOCHS: "2", TRAIN_EXAMPLES: "16000", TEST_EXAMPLES: "1000", PROGRESS_INTERVAL_MS: "300" };
    const survivor = startProcess(t, "worker/src/main.ts", env);
    const victim = startProcess(t, "worker/src/main.ts", env);
    const slot = slotOfWorker(await status.until((s) => slotOfWorker(s, victim.pid) !== undefined, "the victim registered"), victim.pid)!.slot;
    await status.until((s) => (s.slots[slot]?.pushes ?? 0) >= 1, "a gradient of the victim's applied");
    victim.child.kill("SIGKILL");
    t.equal(await victim.exit, 137, "the worker was killed with SIGKILL");

    const left = (await status.until((s) => s.slots[slot]?.state === SlotState.FREE, `slot ${slot} free`, 10_000)).slots[slot]!;
    t.pass("the server noticed the dead worker within its lease");
    const replacement = startProcess(t, "worker/src/main.ts", env);
    const again = await status.until((s) => slotOfWorker(s, replacement.pid) !== undefined, "the replacement registered", 20_000);
    t.equal(slotOfWorker(again, replacement.pid)!.slot, slot, `the replacement took slot ${slot} again`);
    const resumed = await trainingAgainIn(status, slot, replacement.pid, left, 10_000);
    t.ok(
      resumed.position?.epoch === 0 && (resumed.position?.batch ?? 0) > (left.position?.batch ?? 0),
      `and continued from the slot's data position (epoch 1, batch ${left.position?.batch}), not from the start`,
    );

    t.same(await Promise.all([exitWithin(survivor, 120_000), exitWithin(replacement, 120_000)]), [0, 0], "survivor and replacement finished");
    t.equal(await exitWithin(server, 20_000), 0, "the server exited 0");
    const summary = server.metrics()!;
    t.equal(summary.run_complete, true, "the run is complete");
    t.same(summary.gradients_per_slot, [GRADIENTS_PER_SLOT, GRADIENTS_PER_SLOT], "each slot: every batch's gradient applied exactly once");
    const registrations = summary.registrations as number[];
    t.equal(registrations.length, 2, "slot ids never grew past the worker count");
    t.equal(registrations[slot], 2, `slot ${slot} was registered twice`);
  });
}

t.test("a wrong server address: the worker retries for a bounded time, then exits non-zero naming the address", async (t) => {
  const port = await freePort(); // nothing listens here
  const started = Date.now();
  const worker = startProcess(t, "worker/src/main.ts", { PARAMETER_SERVER_ADDRESS: `127.0.0.1:${port}`, CONNECT_TIMEOUT_MS: "2500" });
  const code = await exitWithin(worker, 30_000);
  t.equal(code, 1, "exit code 1");
  t.ok(Date.now() - started < 20_000, "gave up within its bounded time");
  t.ok(worker.lines.filter((l) => /register attempt \d+ .* failed/.test(l)).length >= 2, "it retried more than once");
  t.ok(worker.lines.some((l) => l.includes(`127.0.0.1:${port}`) && /gave up after \d+ attempts/.test(l)), "the final message names the address and says it gave up");
});
