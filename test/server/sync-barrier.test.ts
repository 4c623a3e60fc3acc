/**
 * Sync mode against a real server: the barrier holds, the step's update is the average of one
 * gradient per worker, and nothing is counted twice.
 */
import t from "tap";
import { Code, ConnectError } from "@connectrpc/connect";
import { Dtype } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { connectToServer } from "@distributed-ps/common/wire/client.ts";
import { atBarrier, gradient, settledWithin, startTestServer, values, workersWithParameters } from "../helpers/test-server.ts";

const LR = "0.1";

t.test("a push completes only once the last worker of the step has pushed", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "3", SERVER_MODE: "sync", LEARNING_RATE: LR });
  const [a, b, c] = await workersWithParameters(ts, 3);
  const base = await a!.pull();
  t.equal(base.version, 0, "training starts at step 0");

  const pa = a!.push(gradient(1), 0, { exampleCount: 1 });
  const pb = b!.push(gradient(2), 0, { exampleCount: 1 });
  await Promise.all([atBarrier(ts, 0), atBarrier(ts, 1)]);
  // Both gradients are in: an answer sent now would arrive within milliseconds on loopback.
  t.equal(await settledWithin(pa, 100), "pending", "first push still waiting with 2 of 3 gradients in");
  t.equal(await settledWithin(pb, 10), "pending", "second push still waiting with 2 of 3 gradients in");
  const after = await b!.pull();
  t.equal(after.version, 0, "no update applied before the barrier is complete");
  t.same(values(after.tensors), values(base.tensors), "parameters untouched before the barrier is complete");

  const rc = await c!.push(gradient(6), 0, { exampleCount: 1 });
  const [ra, rb] = await Promise.all([pa, pb]);
  for (const [name, r] of [["a", ra], ["b", rb], ["c", rc]] as const) {
    t.equal(r.version, 1, `push ${name} returns the version after the step`);
    t.equal(r.contributors, 3, `push ${name}: the step averaged 3 gradients`);
  }
  // mean gradient (1 + 2 + 6) / 3 = 3; SGD: p − 0.1·3 = p − 0.3
  const pulled = await a!.pull();
  t.equal(pulled.version, 1, "the next pull sees the step's version");
  t.same(
    values(pulled.tensors).w!.map((x) => Number(x.toFixed(5))),
    [0.7, 1.7, 2.7, 3.7],
    "w = [1,2,3,4] − 0.1 × mean(1,2,6)",
  );
  t.same(values(pulled.tensors).b!.map((x) => Number(x.toFixed(5))), [0.2, -0.8], "b = [0.5,−0.5] − 0.3");
});

t.test("a straggler past SYNC_TIMEOUT_MS: the step is applied without it, and GetStatus counts the step it missed", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync", LEARNING_RATE: LR, SYNC_TIMEOUT_MS: "200" });
  const [a, b] = await workersWithParameters(ts, 2);
  const missed = async () => (await connectToServer(ts.address).getStatus({})).slots.map((s) => s.stepsMissed);
  t.same(await missed(), [0, 0], "nothing missed yet");

  const alone = await a!.push(gradient(1), 0, { exampleCount: 1 });
  t.equal(alone.contributors, 1, "step 0 was applied with slot 0's gradient only");
  t.same(await missed(), [0, 1], "slot 1 missed step 0");
  t.ok(ts.logs.some((l) => /step 0: applying with 1 gradient\(s\) after 200 ms; no gradient from slot\(s\) 1 \(stragglers\)/.test(l)), "and the log says so");

  const [ra, rb] = await Promise.all([a!.push(gradient(1), 1, { exampleCount: 1 }), b!.push(gradient(1), 1, { exampleCount: 1 })]);
  t.same([ra.contributors, rb.contributors], [2, 2], "step 1 waited for both");
  t.same(await missed(), [0, 1], "a step both made in time is missed by nobody");
});

t.test("a second push for the same step is refused and not counted twice", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync", LEARNING_RATE: LR });
  const [a, b] = await workersWithParameters(ts, 2);
  const first = a!.push(gradient(1), 0, { exampleCount: 1 });
  await atBarrier(ts, 0);
  const twice = await a!.push(gradient(100), 0, { exampleCount: 1 }).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(twice?.code, Code.AlreadyExists, "the duplicate push is refused with AlreadyExists");
  t.match(twice?.rawMessage ?? "", /slot 0 already pushed a gradient for step 0/, "the message names the slot and step");
  await b!.push(gradient(3), 0, { exampleCount: 1 });
  const r = await first;
  t.equal(r.contributors, 2, "the step counted 2 gradients, not 3");
  // mean(1, 3) = 2 → w[0] = 1 − 0.2 = 0.8 (had the 100 counted: 1 − 0.1·(104/3) ≈ −2.47)
  const w = values((await a!.pull()).tensors).w!;
  t.ok(Math.abs(w[0]! - 0.8) < 1e-6, `w[0] is 0.8 (got ${w[0]})`);
});

t.test("a push for a step that was already applied is refused with Aborted", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync", LEARNING_RATE: LR });
  const [a, b] = await workersWithParameters(ts, 2);
  await Promise.all([a!.push(gradient(1), 0, { exampleCount: 1 }), b!.push(gradient(1), 0, { exampleCount: 1 })]);
  const late = await a!.push(gradient(1), 0, { exampleCount: 1 }).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(late?.code, Code.Aborted, "a gradient for step 0 after step 0 was applied is Aborted");
  t.match(late?.rawMessage ?? "", /current step 1/, "the message says the current step");
  const ahead = await a!.push(gradient(1), 5, { exampleCount: 1 }).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(ahead?.code, Code.InvalidArgument, "a gradient claiming a future step is InvalidArgument");
  const status = await ts.server.run.store.version;
  t.equal(status, 1, "refused pushes changed no version");
});

t.test("many steps: every step averages exactly one gradient per worker", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "4", SERVER_MODE: "sync", LEARNING_RATE: "1" });
  const workers = await workersWithParameters(ts, 4);
  const steps = 20;
  // Worker i always pushes gradient (i + 1): every step's mean is (1+2+3+4)/4 = 2.5, so after 20
  // steps with lr 1 each parameter has moved by exactly −50.
  await Promise.all(
    workers.map(async (w, i) => {
      for (let s = 0; s < steps; s++) {
        const p = await w.pull();
        const r = await w.push(gradient(i + 1), p.version, { exampleCount: 1 });
        t.equal(r.contributors, 4, `worker ${i} step ${s}: 4 contributors`);
      }
    }),
  );
  const final = await workers[0]!.pull();
  t.equal(final.version, steps, `${steps} steps applied`);
  t.same(values(final.tensors).w, [1 - 50, 2 - 50, 3 - 50, 4 - 50], "each step moved the parameters by the mean gradient exactly once");
});

t.test("a step sums float16, bfloat16 and float32 pushes in slot order, bit for bit as float32", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "3", SERVER_MODE: "sync", LEARNING_RATE: LR });
  const [a, b, c] = await workersWithParameters(ts, 3);
  // x is exact in bfloat16 and float32, 1 in float16. In float32, (1 + x) + x is 1 while (x + x) + 1
  // is not: pushed in reverse slot order, the sum must still be taken in slot order.
  const x = 1.5 * 2 ** -25;
  const pc = c!.push(gradient(x), 0, { exampleCount: 1, dtype: Dtype.FLOAT32 });
  await atBarrier(ts, 2);
  const pb = b!.push(gradient(x), 0, { exampleCount: 1, dtype: Dtype.BFLOAT16 });
  await atBarrier(ts, 1);
  await a!.push(gradient(1), 0, { exampleCount: 1, dtype: Dtype.FLOAT16 });
  await Promise.all([pb, pc]);
  const sum = Math.fround(Math.fround(1 + x) + x);
  t.not(sum, Math.fround(Math.fround(x + x) + 1), "the order shows in the sum");
  const w = values((await a!.pull()).tensors).w!;
  t.same(w, [1, 2, 3, 4].map((p) => Math.fround(p - 0.1 * (sum * (1 / 3)))), "w = p − lr·(sum / 3), each value exactly");
});

t.test("top-k (sparse) tensors count like dense ones, in a push of their own or mixed with dense tensors", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync", LEARNING_RATE: "1" });
  const [a, b] = await workersWithParameters(ts, 2);
  // a: w sparse (elements 1 and 3), b dense; a: b dense, b: b sparse (element 0).
  const pa = a!.push(
    [
      { name: "w", shape: [2, 2], indices: Uint32Array.from([1, 3]), values: Float32Array.from([2, 4]) },
      { name: "b", shape: [2], data: Float32Array.from([1, 1]) },
    ],
    0,
    { exampleCount: 1 },
  );
  await atBarrier(ts, 0);
  await b!.push(
    [
      { name: "w", shape: [2, 2], data: Float32Array.from([2, 2, 2, 2]) },
      { name: "b", shape: [2], indices: Uint32Array.from([0]), values: Float32Array.from([3]) },
    ],
    0,
    { exampleCount: 1, dtype: Dtype.FLOAT16 },
  );
  t.equal((await pa).contributors, 2);
  const p = values((await a!.pull()).tensors);
  // mean w gradient: ([0, 2, 0, 4] + [2, 2, 2, 2]) / 2 = [1, 2, 1, 3]; mean b: ([1, 1] + [3, 0]) / 2 = [2, 0.5]
  t.same(p.w, [0, 0, 2, 1], "w = [1, 2, 3, 4] − [1, 2, 1, 3]");
  t.same(p.b, [-1.5, -1], "b = [0.5, −0.5] − [2, 0.5]");

  // The pool's float32 sets are reused, not left with old values: the next sparse push sees zeros elsewhere.
  const pa2 = a!.push([{ name: "w", shape: [2, 2], indices: Uint32Array.from([0]), values: Float32Array.from([2]) }, { name: "b", shape: [2], data: new Float32Array(2) }], 1, { exampleCount: 1 });
  await atBarrier(ts, 0);
  await b!.push([{ name: "w", shape: [2, 2], data: new Float32Array(4) }, { name: "b", shape: [2], data: new Float32Array(2) }], 1, { exampleCount: 1 });
  await pa2;
  t.same(values((await a!.pull()).tensors).w, [-1, 0, 2, 1], "only w[0] moved, by 2 / 2");
});
