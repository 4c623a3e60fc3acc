/**
 * Elastic workers with real processes, in sync and async mode: a run starts with 2 worker
 * processes, is scaled up to 3 with `scripts/scale.ts` (the `make scale` command) and a third
 * process, then down to 1 (SetWorkerCount) — and one of the two retired workers is SIGKILLed
 * instead of finishing, as when ECS stops a task. The run completes, every epoch's data is trained
 * exactly once (the server's per-epoch example counts equal the sizes of that epoch's parts), and
 * the retired worker that lived exits 0.
 */
import t from "tap";
import { connectToServer } from "@distributed-ps/common/wire/client.ts";
import { exitWithin, onLoopback, runNode, startProcess } from "../helpers/processes.ts";
import { ServerStatus, slotOfWorker, SlotState, startAnsweringServer } from "../helpers/server-status.ts";

const TRAIN = 12_000;
const BATCH = 32;
// Enough epochs that the resizes below land mid-run however slow the machine is to make them.
const EPOCHS = 6;

/** Examples an epoch trains when its data is cut into `parts` (each part drops its last partial batch). */
function examplesFor(parts: number): number {
  let n = 0;
  for (let p = 0; p < parts; p++) {
    const size = Math.floor(((p + 1) * TRAIN) / parts) - Math.floor((p * TRAIN) / parts);
    n += Math.floor(size / BATCH) * BATCH;
  }
  return n;
}

async function scale(address: string, workers: number): Promise<string> {
  const { code, output } = await runNode("scripts/scale.ts", { args: ["--workers", String(workers), "--address", address] });
  if (code !== 0) throw new Error(`scale.ts exited ${code}: ${output}`);
  return output.trim();
}

for (const mode of ["sync", "async"] as const) {
  t.test(`${mode}: scale 2 -> 3 -> 1 mid-run, one retired worker killed; every epoch's data trained once`, async (t) => {
    const { port, env: serverEnv } = await onLoopback({
      TOTAL_WORKERS_EXPECTED: "2",
      SERVER_MODE: mode,
      LEASE_MS: "1500",
    });
    const address = `127.0.0.1:${port}`;
    const status = new ServerStatus(address);
    const server = await startAnsweringServer(t, serverEnv, status);
    // The tfjs engine: the scaling below is aimed at moments of a run that lasts seconds; ONNX
    // Runtime trains this job in about three, faster than the steps can be taken.
    const env = { PARAMETER_SERVER_ADDRESS: address, EPOCHS: String(EPOCHS), TRAIN_EXAMPLES: String(TRAIN), TEST_EXAMPLES: "500", BATCH_SIZE: String(BATCH), WORKER_ENGINE: "tfjs" };
    const first = [startProcess(t, "worker/src/main.ts", env), startProcess(t, "worker/src/main.ts", env)];
    const started = await status.until(
      (s) => s.epochs[0]?.parts === 2 && s.version > 0 && first.every((w) => slotOfWorker(s, w.pid) !== undefined),
      "epoch 1 divided among 2 slots, both workers in theirs, and trained",
      60_000,
    );
    // Which of the two is retired below (slot 1) is known now: by then its slot may already be
    // FINISHED, its part done before the third worker's.
    const [retiring, survivor] = slotOfWorker(started, first[0]!.pid)!.slot === 1 ? [first[0]!, first[1]!] : [first[1]!, first[0]!];

    t.match(await scale(address, 3), /now has 3 worker slot\(s\); opened slot\(s\) 2/, "make scale WORKERS=3 opened slot 2");
    const third = startProcess(t, "worker/src/main.ts", env);
    const registered = await status.until((s) => slotOfWorker(s, third.pid) !== undefined, "the third worker registered", 20_000);
    t.equal(slotOfWorker(registered, third.pid)!.slot, 2, "a third worker registered into slot 2");
    // The first epoch begun after the resize (the second, unless the machine was slow to resize).
    const cut = await status.until((s) => s.epochs.some((e) => e.parts === 3), "an epoch divided among 3 slots", 60_000);
    const widened = cut.epochs.find((e) => e.parts === 3)!.epoch + 1;
    t.ok(widened < EPOCHS, `epoch ${widened} was divided among 3 workers, with epochs to go`);
    await status.until((s) => (slotOfWorker(s, third.pid)?.position?.epoch ?? -1) >= widened - 1, `the third worker training epoch ${widened}`, 20_000);

    // Straight through the API this time (no process to start), while the third worker's part has
    // only just begun.
    const down = await connectToServer(address).setWorkerCount({ count: 1 });
    t.same([down.count, down.retired], [1, [2, 1]], "SetWorkerCount 1 retired slots 2 and 1");
    // ECS may stop the task of a retiring worker rather than let it finish: kill slot 2's, whose
    // part is certain to be unfinished (slot 1's may be done already, its worker ahead of the third).
    third.child.kill("SIGKILL");
    t.equal(await third.exit, 137, "slot 2's worker was killed");

    t.equal(await exitWithin(retiring, 60_000), 0, "the retired worker that lived finished its part and exited 0");
    t.equal(retiring.metrics()?.retired, true, "and says it was retired");
    // Nobody else could train the rest of slot 2's part: the epochs' counts below show it was.
    t.equal(await exitWithin(survivor, 120_000), 0, "the remaining worker finished the run");
    t.ok(survivor.lines.some((l) => / taking over from batch \d+ the part planned for slot 2 /.test(l)), "it says it took over the rest of the killed worker's part");
    t.equal(await exitWithin(server, 20_000), 0, "the server exited 0");

    const summary = server.metrics()!;
    t.equal(summary.run_complete, true, "the run is complete");
    t.equal(summary.total_workers, 1, "with 1 worker slot at the end");
    const epochs = summary.epochs as { epoch: number; parts: number; parts_complete: number; examples: number }[];
    // Every epoch is cut among the slots live when it began: 2 before the first resize, 3 from the
    // one it widened until the second resize, 1 after (the retired slots' parts of those begun
    // before it are handed over). Either way each epoch's examples are counted once (below).
    const parts = epochs.map((e) => e.parts);
    t.same(parts.slice(0, widened), [...Array<number>(widened - 1).fill(2), 3], `epochs 1..${widened - 1} among 2 slots, epoch ${widened} among 3`);
    t.match(parts.join(","), /^(2,)+3(,3)*(,1)*$/, `then 3 until the second resize and 1 after (${parts.join(", ")})`);
    t.equal(parts.length, EPOCHS, `${EPOCHS} epochs planned`);
    for (const e of epochs) {
      t.equal(e.parts_complete, e.parts, `epoch ${e.epoch + 1}: every part trained`);
      t.equal(e.examples, examplesFor(e.parts), `epoch ${e.epoch + 1}: ${examplesFor(e.parts)} examples counted, each exactly once`);
    }
    t.same(summary.registrations, [1, 1, 1], "no slot was registered twice; ids stayed within 0..2");
  });
}

t.test("SIGTERM: a worker leaves at once, and the sync barrier does not wait out its lease", async (t) => {
  const { port, env: serverEnv } = await onLoopback({
    TOTAL_WORKERS_EXPECTED: "2",
    SERVER_MODE: "sync",
    LEASE_MS: "120000", // waiting out this lease would outlast the test
  });
  const status = new ServerStatus(`127.0.0.1:${port}`);
  const server = await startAnsweringServer(t, serverEnv, status);
  const env = { PARAMETER_SERVER_ADDRESS: `127.0.0.1:${port}`, EPOCHS: "2", TRAIN_EXAMPLES: String(TRAIN), TEST_EXAMPLES: "500", PROGRESS_INTERVAL_MS: "200" };
  const [a, b] = [startProcess(t, "worker/src/main.ts", env), startProcess(t, "worker/src/main.ts", env)];
  const training = await status.until((s) => (slotOfWorker(s, b.pid)?.pushes ?? 0) >= 1, "a gradient of the second worker's applied", 60_000);
  const slot = slotOfWorker(training, b.pid)!.slot;
  const stoppedAt = Date.now();
  b.child.kill("SIGTERM");
  t.equal(await exitWithin(b, 10_000), 143, "the worker exited (143) promptly after SIGTERM");
  await status.until((s) => s.slots[slot]?.state === SlotState.FREE, `slot ${slot} free`, 5_000);
  t.pass("the server freed its slot at once");
  // The version must move on by many steps (or the run end), not just finish the step in flight.
  const versionAtStop = (await status.until(() => true, "the server answering")).version;
  try {
    await status.until((s) => s.version >= versionAtStop + 20 || s.runComplete, `the other worker training on from version ${versionAtStop}`, 20_000);
    t.pass("the other worker trained on");
  } catch (e) {
    t.fail(`${(e as Error).message}\nserver's last lines:\n${server.tail()}\nworker's last lines:\n${a.tail()}`);
  }
  t.ok(Date.now() - stoppedAt < 30_000, "the other worker went on training without waiting out the 120 s lease");
});
