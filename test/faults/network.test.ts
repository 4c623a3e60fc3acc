/**
 * Network faults between separate hosts: the server and two workers each run in their own Linux
 * network namespace with their own address, and the workers reach the server under its documented
 * DNS name (see ../helpers/netns.ts). Worker A holds slot 0, worker B slot 1.
 *
 * - B's link is cut for longer than the lease, then restored: the server drops B, A trains on
 *   alone, B notices, registers again into its slot and continues from its data position.
 * - B's uplink is rate-limited: A is held no longer than the straggler bound (SYNC_TIMEOUT_MS),
 *   B's late gradients are refused and recomputed, and once the link is fast again B catches up.
 * - Two known gaps, with their failing assertions marked TODO: a push slower than the lease, and a
 *   server address nobody answers for (EHOSTUNREACH).
 *
 * Exactly once: every slot owns TRAIN_EXAMPLES / 2 examples, so it must have exactly
 * EPOCHS × floor(slice / BATCH_SIZE) gradients applied — a gradient lost or applied twice changes
 * the server's `gradients_per_slot`.
 */
import t from "tap";
import { setTimeout as sleep } from "node:timers/promises";
import { createLab, netnsUnavailable, SERVER_DNS_NAME, type Lab } from "../helpers/netns.ts";
import { exitWithin, type Proc } from "../helpers/processes.ts";
import type { SlotStatus } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { firstAnswer, ServerStatus, slotOfWorker, SlotState, trainingAgainIn } from "../helpers/server-status.ts";
import { workerEnvFor } from "../helpers/exact-run.ts";

const unavailable = netnsUnavailable();
if (unavailable !== undefined) t.comment(`network fault tests skipped: ${unavailable}`);

const PORT = 8000;
const BATCH_SIZE = 32;
const gradientsPerSlot = (trainExamples: number, epochs: number) => epochs * Math.floor(trainExamples / 2 / BATCH_SIZE);

/** Milliseconds since the epoch of a log line (both programs start lines with an ISO time). */
const at = (line: string) => Date.parse(line.slice(0, 24));

/** The global batch number a worker's progress line reports ("epoch 2/3 batch 40/250" → 290). */
function progress(line: string): number | undefined {
  const m = / epoch (\d+)\/\d+ batch (\d+)\/(\d+) /.exec(line);
  return m === null ? undefined : (Number(m[1]) - 1) * Number(m[3]) + Number(m[2]);
}

/** The worker's latest progress (global batch number) logged at or before `time`. */
function progressAt(w: Proc, time: number): number {
  let latest = 0;
  for (const line of w.lines) {
    const p = progress(line);
    if (p !== undefined && at(line) <= time) latest = p;
  }
  return latest;
}

function quantile(xs: readonly number[], q: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

/**
 * The server on the lab's server host: sync, two workers, no dashboard, `env` on top; once it
 * answers GetStatus, which the test reads through the lab's relay.
 */
async function startServer(lab: Lab, env: Record<string, string>): Promise<{ server: Proc; status: ServerStatus }> {
  const server = lab.start(lab.server, "server/src/main.ts", {
    SERVER_HOST: lab.server.address,
    SERVER_PORT: String(PORT),
    TOTAL_WORKERS_EXPECTED: "2",
    SERVER_MODE: "sync",
    DASHBOARD_ENABLED: "false",
    ...env,
  });
  const status = new ServerStatus(await lab.reach(lab.server, PORT));
  await firstAnswer(server, status);
  return { server, status };
}

t.test("a worker's link is cut for longer than the lease: it is dropped, the other trains on, it rejoins its slot", { skip: unavailable ?? false }, async (t) => {
  const LEASE_MS = 1000;
  const CUT_MS = 2500;
  const [TRAIN, EPOCHS] = [16000, 2];
  const expected = gradientsPerSlot(TRAIN, EPOCHS);
  const lab = createLab(t, { workers: 2 });
  const { server, status } = await startServer(lab, { LEASE_MS: String(LEASE_MS) });
  const env = workerEnvFor({ epochs: EPOCHS, trainExamples: TRAIN, batchSize: BATCH_SIZE }, `${SERVER_DNS_NAME}:${PORT}`, { RPC_TIMEOUT_MS: "5000", CONNECT_TIMEOUT_MS: "30000" });
  const a = lab.start(lab.workers[0]!, "worker/src/main.ts", { ...env, WORKER_SLOT: "0" });
  const b = lab.start(lab.workers[1]!, "worker/src/main.ts", { ...env, WORKER_SLOT: "1" });
  const registered = await status.until((s) => slotOfWorker(s, b.pid) !== undefined, "B registered", 30_000);
  t.equal(slotOfWorker(registered, b.pid)!.slot, 1, "B holds slot 1");
  await status.until((s) => (slotOfWorker(s, b.pid)?.pushes ?? 0) >= 1, "a gradient of B's applied", 30_000);

  const cutAt = Date.now();
  lab.cut(lab.workers[1]!);
  const left = (await status.until((s) => s.slots[1]?.state === SlotState.FREE, "slot 1 free (B's lease expired)", LEASE_MS + 5000)).slots[1]!;
  const droppedAt = Date.now();
  // SYNC_TIMEOUT_MS is left at its default, so until then A's steps wait for B: the lease is what frees A.
  const dropMs = droppedAt - cutAt;
  t.comment(`the server dropped B ${dropMs} ms after its link was cut (lease ${LEASE_MS} ms)`);
  t.ok(dropMs >= LEASE_MS / 2 && dropMs <= LEASE_MS + 1000, `B was dropped about one lease after the cut (${dropMs} ms)`);
  t.equal(left.registrations, 1, "B had not lost its session before the cut");
  await sleep(Math.max(0, cutAt + CUT_MS - Date.now()));
  const restoredAt = Date.now();
  lab.restore(lab.workers[1]!);

  // Its calls hang while the link is down; after it is back, TCP's retransmission (or at worst the
  // 5 s call deadline) ends them and the server answers that the session is gone.
  const back = await trainingAgainIn(status, 1, b.pid, left, 20_000);
  const backMs = Date.now() - restoredAt;
  t.ok(backMs <= 10_000, `B was training in slot 1 again within 10 s of the link coming back (${backMs} ms)`);
  t.ok(
    back.position?.epoch === left.position?.epoch && (back.position?.batch ?? 0) > (left.position?.batch ?? 0),
    `B continued from its data position (epoch ${(left.position?.epoch ?? 0) + 1}, batch ${left.position?.batch}), not from the start`,
  );

  t.same(await Promise.all([exitWithin(a, 90_000), exitWithin(b, 90_000)]), [0, 0], "both workers finished");
  t.equal(await exitWithin(server, 20_000), 0, "the server exited 0");
  t.comment(`B: ${b.lines.find((l) => /lost the session/.test(l)) ?? "(no 'lost the session' line)"}`);
  const aloneSteps = progressAt(a, restoredAt) - progressAt(a, droppedAt);
  t.comment(`A trained ${aloneSteps} batches while B was cut off`);
  t.ok(aloneSteps > 0, "A kept training while B was cut off");

  const summary = server.metrics()!;
  t.equal(summary.run_complete, true, "the run is complete");
  t.same(summary.gradients_per_slot, [expected, expected], `each slot: exactly ${expected} gradients applied, none lost, none twice`);
  const registrations = summary.registrations as number[];
  t.equal(registrations.length, 2, "slot ids never grew past the worker count");
  t.equal(registrations[0], 1, "A never lost its slot");
  t.ok(registrations[1]! >= 2, `B registered its slot again (${registrations[1]} registrations)`);
  // Each sync step applies one gradient per contributor: 2 × expected = 2 × both + single.
  const singleSteps = 2 * (Number(summary.version) - expected);
  t.ok(singleSteps >= aloneSteps, `${singleSteps} steps were applied with one gradient (A alone while B was away, then B alone after A finished)`);
  t.ok(Number(b.metrics()!.rejoins) >= 1, "B reports that it rejoined");
});

t.test("a worker's link is slow: the other is held no longer than the straggler bound, and no gradient is lost", { skip: unavailable ?? false }, async (t) => {
  const SYNC_TIMEOUT_MS = 400;
  const RATE_KBIT = 200; // a 28 KB gradient push takes about 1.2 s: three times the bound
  const STRAGGLER_STEPS = 14;
  const [TRAIN, EPOCHS] = [3200, 1];
  const expected = gradientsPerSlot(TRAIN, EPOCHS);
  const lab = createLab(t, { workers: 2 });
  const slow = lab.workers[1]!;
  const { server, status } = await startServer(lab, {
    SYNC_TIMEOUT_MS: String(SYNC_TIMEOUT_MS),
    // Longer than a slow push: B stays a member, so only the straggler bound can release A.
    LEASE_MS: "5000",
  });
  // Progress every 100 ms, shorter than a step under the bound, so A logs every step and its line times are step times.
  const env = workerEnvFor({ epochs: EPOCHS, trainExamples: TRAIN, batchSize: BATCH_SIZE }, `${SERVER_DNS_NAME}:${PORT}`, { TEST_EXAMPLES: "200", PROGRESS_INTERVAL_MS: "100", RPC_TIMEOUT_MS: "20000" });
  lab.limit(slow, RATE_KBIT);
  const a = lab.start(lab.workers[0]!, "worker/src/main.ts", { ...env, WORKER_SLOT: "0" });
  const b = lab.start(slow, "worker/src/main.ts", { ...env, WORKER_SLOT: "1", LOG_LEVEL: "debug" });
  await status.until((s) => (s.slots[1]?.stepsMissed ?? 0) >= STRAGGLER_STEPS, `${STRAGGLER_STEPS} steps applied without B's gradient`, 40_000);
  // When the bound first released A, to measure A's steps from then on.
  const straggler = /step \d+: applying with 1 gradient\(s\) after \d+ ms; no gradient from slot\(s\) 1 \(stragglers\)/;
  const slowUntil = Date.now();
  lab.unlimit(slow);

  // A's step times while B was slow: consecutive progress lines, one per step.
  const lines = a.lines.filter((l) => progress(l) !== undefined && at(l) <= slowUntil);
  const stepMs: number[] = [];
  for (let i = 1; i < lines.length; i++) {
    const steps = progress(lines[i]!)! - progress(lines[i - 1]!)!;
    if (steps > 0 && at(lines[i - 1]!) >= at(server.lines.find((l) => straggler.test(l))!)) stepMs.push((at(lines[i]!) - at(lines[i - 1]!)) / steps);
  }
  // B's gradient cycle (pull, compute, push until refused) while its link was slow.
  const refusals = b.lines.filter((l) => /push refused \(Aborted: gradient for step \d+ arrived after that step was applied/.test(l) && at(l) <= slowUntil).map(at);
  const cycles = refusals.slice(1).map((x, i) => x - refusals[i]!);
  t.comment(
    `A's step times with B slow (ms, n=${stepMs.length}): median ${quantile(stepMs, 0.5)}, p90 ${quantile(stepMs, 0.9)}, max ${Math.max(...stepMs)}; ` +
      `SYNC_TIMEOUT_MS ${SYNC_TIMEOUT_MS}; all: ${stepMs.map(Math.round).join(", ")}; B's push cycles (ms): ${cycles.join(", ")}`,
  );
  t.ok(stepMs.length >= STRAGGLER_STEPS / 2, `A took ${stepMs.length} measured steps while B was slow`);
  t.ok(quantile(stepMs, 0.5) >= SYNC_TIMEOUT_MS * 0.8, "A did wait for B, up to the bound (the bound is what released it)");
  t.ok(quantile(stepMs, 0.9) <= SYNC_TIMEOUT_MS + 150, `p90 of A's step time within the bound + 150 ms (${quantile(stepMs, 0.9)} ms)`);
  t.ok(Math.max(...stepMs) <= SYNC_TIMEOUT_MS + 400, `every step of A within the bound + 400 ms (${Math.max(...stepMs)} ms)`);
  t.ok(refusals.length >= 2, `B's late gradients were refused (${refusals.length} times) and recomputed`);
  t.ok(cycles.length > 0 && quantile(cycles, 0.5) >= 2 * SYNC_TIMEOUT_MS, "without the bound A would have waited for B's pushes, each more than twice the bound");
  t.notOk(server.lines.some((l) => /slot 1: lease expired/.test(l)), "B stayed a member throughout (the bound, not the lease, released A)");

  t.same(await Promise.all([exitWithin(a, 60_000), exitWithin(b, 60_000)]), [0, 0], "both workers finished");
  t.equal(await exitWithin(server, 20_000), 0, "the server exited 0");
  const summary = server.metrics()!;
  t.equal(summary.run_complete, true, "the run is complete");
  t.same(summary.gradients_per_slot, [expected, expected], `each slot: exactly ${expected} gradients applied — B's refused gradients were recomputed, not dropped`);
  t.ok(Number(summary.stale_gradients_rejected) >= refusals.length, "the server counted the refused late gradients");
  t.ok(Number(b.metrics()!.retried_batches) >= refusals.length, "B reports the batches it recomputed");
  t.same(summary.registrations, [1, 1], "nobody lost a slot");
});

// Regression tests for two gaps these fault tests found: the lease used to be renewed only when a
// call started (a push streaming for longer than LEASE_MS lost its slot, its heartbeats queued
// behind it on the same connection), and EHOSTUNREACH (reported by connect-node as Internal) was
// not retried.

t.test("a worker uploading slower than the lease keeps its slot while its push streams in", { skip: unavailable ?? false }, async (t) => {
  const lab = createLab(t, { workers: 2 });
  const { status } = await startServer(lab, {
    LEASE_MS: "1500",
    // 4 KB chunks take 0.5 s each at 64 kbit/s, well within the lease; a whole 28 KB push takes 3.6 s.
    MAX_CHUNK_BYTES: "4096",
  });
  lab.limit(lab.workers[1]!, 64);
  const env = { PARAMETER_SERVER_ADDRESS: `${SERVER_DNS_NAME}:${PORT}`, EPOCHS: "1", TRAIN_EXAMPLES: "3200", TEST_EXAMPLES: "200", PROGRESS_INTERVAL_MS: "100", RPC_TIMEOUT_MS: "20000" };
  lab.start(lab.workers[0]!, "worker/src/main.ts", { ...env, WORKER_SLOT: "0" });
  lab.start(lab.workers[1]!, "worker/src/main.ts", { ...env, WORKER_SLOT: "1" });
  // Dropped: its lease ran out (free), and it may have registered again since.
  const dropped = (x: SlotStatus) => x.registrations > 1 || (x.registrations === 1 && x.state !== SlotState.ACTIVE);
  const first = (await status.until((s) => s.slots[1] !== undefined && (s.slots[1].pushes >= 2 || dropped(s.slots[1])), "slot 1 with two gradients applied, or dropped", 25_000)).slots[1]!;
  t.comment(`slot 1: ${SlotState[first.state]}, ${first.registrations} registration(s), ${first.pushes} gradient(s) applied`);
  t.ok(first.pushes >= 2 && !dropped(first), "B pushed two gradients over its slow link without losing its slot");
});

t.test("a server host that does not answer at all: the worker retries for its bounded time, then exits naming the address", { skip: unavailable ?? false }, async (t) => {
  const lab = createLab(t, { workers: 1 });
  lab.cut(lab.server); // nobody answers for the server's address: a connection attempt ends in EHOSTUNREACH
  const address = `${SERVER_DNS_NAME}:${PORT}`;
  const started = Date.now();
  const worker = lab.start(lab.workers[0]!, "worker/src/main.ts", { PARAMETER_SERVER_ADDRESS: address, CONNECT_TIMEOUT_MS: "6000", RPC_TIMEOUT_MS: "5000" });
  t.equal(await exitWithin(worker, 40_000), 1, "exit code 1");
  t.comment(`last line: ${worker.lines.at(-1) ?? ""}`);
  t.ok(Date.now() - started >= 6000, "it kept trying for CONNECT_TIMEOUT_MS");
  t.ok(worker.lines.some((l) => /register attempt \d+ .* failed/.test(l)), "it retried");
  t.ok(worker.lines.some((l) => l.includes(address) && /gave up after \d+ attempts/.test(l)), "the final message names the address and says it gave up");
});
