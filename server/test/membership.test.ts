import t, { type Test } from "tap";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason, WorkerSessionSchema, type WorkerSession } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { formatFingerprint } from "@distributed-ps/common/job-identity.ts";
import { Membership, type LeaveReason } from "../src/run/membership.ts";
import { awaitingWorker, type Slot } from "../src/run/slot.ts";

const FP = "synthetic:mlp:seed=42";
const LEASE = 1000;

/** A membership with a hand-driven clock that records every join and leave. */
function setup(totalWorkers = 3, complete?: () => boolean) {
  let now = 10_000;
  const joins: { slot: number; replacement: boolean }[] = [];
  const leaves: { slot: number; reason: LeaveReason }[] = [];
  const m = new Membership({
    totalWorkers,
    leaseMs: LEASE,
    now: () => now,
    onJoin: (s, replacement) => joins.push({ slot: s.index, replacement }),
    onLeave: (s, reason) => leaves.push({ slot: s.index, reason }),
    complete,
  });
  return {
    m,
    joins,
    leaves,
    advance: (ms: number) => {
      now += ms;
    },
    now: () => now,
  };
}

const session = (s: Slot | { index: number; token: string }): WorkerSession =>
  create(WorkerSessionSchema, { slot: s.index, token: s.token });

/** Asserts `fn` throws a ConnectError with `code` and a message matching `pattern`. */
function rejects(t: Test, fn: () => unknown, code: Code, pattern: RegExp, what: string) {
  try {
    fn();
    t.fail(`${what}: expected ConnectError ${Code[code]}, nothing was thrown`);
  } catch (err) {
    t.type(err, ConnectError, `${what}: throws a ConnectError`);
    t.equal((err as ConnectError).code, code, `${what}: code ${Code[code]}`);
    t.match((err as ConnectError).rawMessage, pattern, `${what}: message explains`);
  }
}

t.test("slots are handed out lowest first; a free preferred slot is honoured", async (t) => {
  const { m, joins } = setup(4);
  t.equal(m.register(-1, FP, "a").index, 0, "first worker gets slot 0");
  t.equal(m.register(-1, FP, "b").index, 1, "second worker gets slot 1");
  t.equal(m.register(3, FP, "c").index, 3, "preferred free slot 3 is honoured");
  t.equal(m.register(1, FP, "d").index, 2, "preferred slot 1 is taken: lowest free (2) instead");
  t.same(joins, [
    { slot: 0, replacement: false },
    { slot: 1, replacement: false },
    { slot: 3, replacement: false },
    { slot: 2, replacement: false },
  ], "onJoin called once per registration, none a replacement");
  t.same(m.active().map((s) => s.index), [0, 1, 2, 3], "all four active");
  const s0 = m.slots[0]!;
  t.equal(s0.state, "active", "slot 0 active");
  t.equal(s0.label, "a", "slot keeps the worker label");
  t.equal(s0.leaseExpiresAt, 10_000 + LEASE, "lease runs out LEASE ms after registration");
  t.equal(s0.registrations, 1, "one registration");
  t.not(s0.token, m.slots[1]!.token, "tokens differ between slots");
  t.ok(s0.token.length > 0, "token is non-empty");
});

t.test("registration beyond the worker count is ResourceExhausted, naming the lease", async (t) => {
  const { m } = setup(2);
  m.register(-1, FP, "a");
  m.register(-1, FP, "b");
  rejects(t, () => m.register(-1, FP, "c"), Code.ResourceExhausted, /no free slot: 2 of the run's 2 worker slots are held.*lease \(1000 ms\) runs out/, "third of 2");
  rejects(t, () => m.register(0, FP, "c"), Code.ResourceExhausted, /no free slot/, "preferred but taken, none free");
});

t.test("invalid registrations: preferred slot out of range, fingerprint mismatch", async (t) => {
  const { m } = setup(3);
  rejects(t, () => m.register(3, FP, "a"), Code.InvalidArgument, /preferred slot 3 does not exist: the run has 3 slots \(0\.\.2\)/, "preferred slot 3 of 3");
  rejects(t, () => m.register(50, FP, "a"), Code.InvalidArgument, /preferred slot 50 does not exist/, "preferred slot 50");
  m.register(-1, FP, "a");
  rejects(t, () => m.register(-1, "other:model", "b"), Code.FailedPrecondition, /job "other:model" where the run's is "synthetic:mlp:seed=42"/, "fingerprint mismatch");
  t.equal(m.active().length, 1, "refused registrations take no slot");
  t.equal(m.register(-1, FP, "b").index, 1, "a matching fingerprint still registers");
});

t.test("an expired lease frees the slot, which the next registration reuses as a replacement", async (t) => {
  const { m, joins, leaves, advance } = setup(2);
  const a = m.register(-1, FP, "a");
  const b = m.register(-1, FP, "b");
  const oldToken = a.token;
  advance(LEASE - 1);
  m.authenticate(session(b)); // b renews, a stays silent
  t.same(m.sweep(), [], "one ms before expiry nothing is freed");
  advance(1);
  const freed = m.sweep();
  t.same(freed.map((s) => s.index), [0], "at exactly LEASE ms slot 0's lease has run out");
  t.equal(m.slots[0]!.state, "free", "slot 0 is free");
  t.equal(m.slots[0]!.token, "", "its token is cleared");
  t.same(leaves, [{ slot: 0, reason: "lease expired" }], "onLeave(slot 0, 'lease expired')");
  t.equal(m.slots[1]!.state, "active", "slot 1 (renewed) is still active");

  const again = m.register(-1, FP, "a2");
  t.equal(again.index, 0, "the next registration gets the same slot 0");
  t.not(again.token, oldToken, "with a new token");
  t.same(joins.at(-1), { slot: 0, replacement: true }, "onJoin reports a replacement");
  t.equal(again.registrations, 2, "slot 0 has been registered twice");
  rejects(t, () => m.authenticate(session({ index: 0, token: oldToken })), Code.FailedPrecondition, /session for slot 0 is not current \(its lease expired or the slot was re-registered\)/, "the old holder's token");
});

t.test("20 restarts of every worker never produce a slot id >= N", async (t) => {
  const N = 3;
  const { m, advance, leaves } = setup(N);
  const seen = new Set<number>();
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < N; i++) seen.add(m.register(-1, FP, `w${round}.${i}`).index);
    advance(LEASE); // everyone goes silent: all leases run out
  }
  t.same([...seen].sort(), [0, 1, 2], "only slots 0, 1, 2 were ever handed out");
  t.equal(leaves.filter((l) => l.reason === "lease expired").length, 19 * N, "19 rounds × 3 expiries observed by the 20th round");
  t.equal(
    m.slots.reduce((n, s) => n + s.registrations, 0),
    20 * N,
    "60 registrations spread over 3 slots",
  );
  t.equal(m.slots.length, N, "slot table never grew");
});

t.test("authenticate renews the lease; a stale or bad session is refused", async (t) => {
  const { m, advance, leaves } = setup(2);
  const a = m.register(-1, FP, "a");
  for (let i = 0; i < 5; i++) {
    advance(LEASE - 100);
    t.equal(m.authenticate(session(a)).index, 0, `renewal ${i + 1} at ${(i + 1) * (LEASE - 100)} ms succeeds`);
  }
  t.equal(a.state, "active", "after 4500 ms of regular calls (lease 1000 ms) the slot is still held");
  t.equal(leaves.length, 0, "no leave");
  t.equal(a.leaseExpiresAt, 10_000 + 5 * 900 + LEASE, "lease runs out LEASE ms after the last call");
  t.equal(a.lastSeen, 10_000 + 5 * 900, "lastSeen is the last call");

  rejects(t, () => m.authenticate(session({ index: 0, token: "forged" })), Code.FailedPrecondition, /not current/, "wrong token");
  rejects(t, () => m.authenticate(session({ index: 1, token: "" })), Code.FailedPrecondition, /not current/, "empty token on a free slot");
  rejects(t, () => m.authenticate(session({ index: 7, token: a.token })), Code.FailedPrecondition, /slot 7 does not exist \(the run has 2\)/, "unknown slot");
  rejects(t, () => m.authenticate(undefined), Code.InvalidArgument, /no worker session/, "no session");

  const token = a.token;
  advance(LEASE);
  rejects(t, () => m.authenticate(session({ index: 0, token })), Code.FailedPrecondition, /not current/, "authenticating after the lease ran out");
  t.same(leaves, [{ slot: 0, reason: "lease expired" }], "authenticate swept the expired lease");
});

t.test("finish: slot leaves, is never handed out again; once the run is complete registering is refused", async (t) => {
  let complete = false;
  const { m, leaves, advance } = setup(2, () => complete);
  const a = m.register(-1, FP, "a");
  const bToken = m.register(-1, FP, "b").token;
  const aToken = a.token;
  m.finish(session(a));
  t.equal(a.state, "finished", "slot 0 finished");
  t.equal(a.token, "", "its token is cleared");
  t.same(leaves, [{ slot: 0, reason: "finished" }], "onLeave(slot 0, 'finished')");
  rejects(t, () => m.authenticate(session({ index: 0, token: aToken })), Code.FailedPrecondition, /the slot has finished/, "finished session can no longer call");

  // slot 1's worker dies; its replacement must get slot 1, never the finished slot 0
  advance(LEASE);
  const b2 = m.register(0, FP, "b2");
  t.equal(b2.index, 1, "preferring finished slot 0 still yields the free slot 1");
  rejects(t, () => m.register(-1, FP, "c"), Code.ResourceExhausted, /1 of the run's 2 worker slots are held by live workers and 1 have finished/, "no slot: finished slot 0 is not reused");
  t.not(b2.token, bToken, "replacement has a new token");
  advance(5 * LEASE);
  t.equal(a.state, "finished", "a finished slot does not expire into free");

  const b3 = m.register(-1, FP, "b3");
  m.finish(session(b3));
  t.same(leaves.map((l) => l.reason), ["finished", "lease expired", "lease expired", "finished"], "leave reasons in order");
  complete = true;
  rejects(t, () => m.register(-1, FP, "late"), Code.FailedPrecondition, /the run is complete/, "registering after completion");
  try {
    m.register(-1, FP, "late");
  } catch (err) {
    t.same(
      (err as ConnectError).findDetails(ErrorDetailSchema).map((d) => d.reason),
      [ErrorReason.RUN_COMPLETE],
      "the refusal carries ErrorDetail RUN_COMPLETE, which workers act on (not the wording)",
    );
  }
});

t.test("resize: lowering the count retires free slots first, then the highest live ones", async (t) => {
  const { m, advance } = setup(4);
  const a = m.register(-1, FP, "a");
  m.register(-1, FP, "b");
  m.register(-1, FP, "c");
  m.register(-1, FP, "d");
  advance(LEASE / 2);
  m.authenticate(session(a)); // only a stays alive: b, c, d's leases run out
  m.authenticate(session(m.slots[3]!));
  advance(LEASE / 2 + 1);
  m.sweep();
  t.same(m.slots.map((s) => s.state), ["active", "free", "free", "active"], "slots 1 and 2 are free");
  t.same(m.resize(3), { opened: [], retired: [2] }, "4 -> 3 retires the highest free slot");
  t.same(m.resize(1), { opened: [], retired: [1, 3] }, "3 -> 1 retires the other free slot, then the highest live one");
  t.equal(m.workerCount, 1, "worker count 1");
  t.ok(m.slots[3]!.retired && m.slots[3]!.state === "active", "the retired live slot keeps its holder, which finishes its part");
  rejects(t, () => m.register(2, FP, "e", true), Code.FailedPrecondition, /slot 2 was retired/, "a retired slot asked for by number");
  rejects(t, () => m.register(-1, FP, "e"), Code.ResourceExhausted, /held by live workers.*or when the worker count is raised/, "no member slot free");
});

t.test("resize: raising the count reopens retired slots (live ones first), then adds new ones", async (t) => {
  const { m } = setup(3);
  m.register(-1, FP, "a");
  m.register(-1, FP, "b");
  m.register(-1, FP, "c");
  t.same(m.resize(1).retired, [2, 1], "3 -> 1 retires the two highest live slots");
  t.same(m.resize(2).opened, [1], "1 -> 2 reopens a retired live slot: its worker simply carries on");
  t.same(m.resize(5).opened, [2, 3, 4], "2 -> 5 reopens slot 2 and adds slots 3 and 4");
  t.equal(m.slots.length, 5, "slot ids grow only to the largest count the run has had");
  t.equal(m.register(-1, FP, "d").index, 3, "a new worker takes a new slot");
  rejects(t, () => m.resize(-1), Code.InvalidArgument, /outside 0\.\.1024/, "a negative count");
  rejects(t, () => m.resize(1025), Code.InvalidArgument, /outside 0\.\.1024/, "a count above the limit");
});

t.test("resize: when a member's worker dies while a retired one still works, they swap", async (t) => {
  const { m, advance } = setup(3);
  const a = m.register(-1, FP, "a");
  m.register(-1, FP, "b");
  const c = m.register(-1, FP, "c");
  t.same(m.resize(2).retired, [2], "the server retires live slot 2");
  // ECS stopped b's task instead: b's lease runs out while a and c live on.
  advance(LEASE / 2);
  m.authenticate(session(a));
  m.authenticate(session(c));
  advance(LEASE / 2 + 1);
  m.sweep();
  t.same(
    m.slots.map((s) => [s.state, s.retired]),
    [
      ["active", false],
      ["free", true],
      ["active", false],
    ],
    "slot 1 (dead) is retired instead and slot 2's worker stays: still 2 live workers",
  );
});

t.test("a free slot waits a bounded time for a worker, then is abandoned", async (t) => {
  let now = 0;
  const abandoned: number[] = [];
  const m = new Membership({ totalWorkers: 3, leaseMs: LEASE, replacementGraceMs: 500, now: () => now, onAbandon: (s) => abandoned.push(s.index) });
  const [a, b] = [m.register(-1, FP, "a"), m.register(-1, FP, "b")];
  t.ok(awaitingWorker(m.slots[2]!), "slot 2 has no worker yet: it waits for its first");
  now += 200;
  m.authenticate(session(a));
  m.authenticate(session(b));
  now += LEASE; // 1200: a's and b's leases (renewed at 200) run out
  m.sweep();
  t.same([a.state, b.state], ["free", "free"], "slots 0 and 1 freed by their leases");
  t.ok(awaitingWorker(a) && awaitingWorker(b), "both wait for a replacement");
  now += 299;
  m.sweep();
  t.same(abandoned, [], "nothing abandoned yet");
  now += 1; // 1500
  m.sweep();
  t.same(abandoned, [2], "slot 2, which never got a worker, is abandoned a lease plus the grace after the start");
  now += 199;
  m.sweep();
  t.same(abandoned, [2], "slots 0 and 1 are not abandoned within the grace after their leases ran out");
  m.register(1, FP, "b2");
  now += 1; // 1700
  m.sweep();
  t.same(abandoned, [2, 0], "slot 0 abandoned once its grace ran out; slot 1 was taken by a replacement in time");
  t.notOk(awaitingWorker(a), "slot 0 no longer waits");
  now += 10 * LEASE;
  m.sweep();
  t.same(abandoned, [2, 0], "slot 1's new worker died too: its slot waits again, counted from the lease's end");
  now += 500;
  m.sweep();
  t.same(abandoned, [2, 0, 1], "and after the grace slot 1 is abandoned");
  m.sweep();
  t.same(abandoned, [2, 0, 1], "abandoning happens once per vacancy");
  const c = m.register(0, FP, "c");
  t.equal(c.index, 0, "an abandoned slot can still be registered into");
  t.notOk(c.abandoned, "and is an ordinary slot again");
});

t.test("a slot restored from a checkpoint waits a lease plus the grace for its worker to come back", async (t) => {
  let now = 0;
  const abandoned: number[] = [];
  const m = new Membership({ totalWorkers: 2, leaseMs: LEASE, replacementGraceMs: 500, now: () => now, onAbandon: (s) => abandoned.push(s.index) });
  m.restore(
    [
      { registrations: 1, pushes: 3, finished: false, position: { epoch: 0, batch: 3 }, retired: false },
      { registrations: 0, pushes: 0, finished: false, position: { epoch: 0, batch: 0 }, retired: false },
    ],
    FP,
  );
  now += LEASE + 499;
  m.sweep();
  t.same(abandoned, [], "within a lease plus the grace of the restart: both still waiting");
  now += 1;
  m.sweep();
  t.same(abandoned, [0, 1], "then both are abandoned");
});

t.test("the server's configured identity refuses a mismatching worker even when it registers first", async (t) => {
  const m = new Membership({ totalWorkers: 2, leaseMs: LEASE, identity: { seed: 42, batch: 32 } });
  const good = formatFingerprint({ dataset: "synthetic", model: "mlp", seed: 42, batch: 32, epochs: 3 });
  const wrong = formatFingerprint({ dataset: "synthetic", model: "mlp", seed: 7, batch: 32, epochs: 3 });
  rejects(t, () => m.register(-1, wrong, "first but wrong"), Code.FailedPrecondition, /seed 7 where the server's SEED is 42/, "wrong SEED first: refused, naming the field and the variable");
  try {
    m.register(-1, wrong, "first but wrong");
  } catch (err) {
    t.same((err as ConnectError).findDetails(ErrorDetailSchema).map((d) => d.reason), [ErrorReason.JOB_MISMATCH], "with ErrorDetail JOB_MISMATCH");
  }
  t.equal(m.fingerprint, undefined, "the refused worker did not fix the run's fingerprint");
  t.equal(m.register(-1, good, "right").index, 0, "a correct worker registers");
  const otherEpochs = formatFingerprint({ dataset: "synthetic", model: "mlp", seed: 42, batch: 32, epochs: 4 });
  rejects(t, () => m.register(-1, otherEpochs, "other epochs"), Code.FailedPrecondition, /epochs 4 where the run's is 3/, "fields the server does not fix are fixed by the first worker");
});
