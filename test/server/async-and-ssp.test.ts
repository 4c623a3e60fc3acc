/**
 * Async and SSP modes against a real server.
 */
import t from "tap";
import { Code, ConnectError } from "@connectrpc/connect";
import { gradient, settledWithin, startTestServer, values, workersWithParameters } from "../helpers/test-server.ts";

t.test("async: a gradient is applied on arrival, without waiting for the others", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "3", SERVER_MODE: "async", LEARNING_RATE: "0.5" });
  const [a] = await workersWithParameters(ts, 3);
  const r = await settledWithin(a!.push(gradient(1), 0, { exampleCount: 1 }), 2000);
  t.not(r, "pending", "the push returned while the other two workers pushed nothing");
  if (r === "pending") return;
  t.equal(r.version, 1, "version advanced by one");
  t.equal(r.staleness, 0, "a fresh gradient has staleness 0");
  const w = values((await a!.pull()).tensors).w!;
  t.same(w, [0.5, 1.5, 2.5, 3.5], "w − 0.5·1 applied immediately");
});

t.test("async: a gradient staler than MAX_STALENESS is refused with Aborted, not dropped silently", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "async", MAX_STALENESS: "2", LEARNING_RATE: "1" });
  const [a, b] = await workersWithParameters(ts, 2);
  for (let i = 0; i < 3; i++) await a!.push(gradient(1), i, { exampleCount: 1 });
  const okStale = await b!.push(gradient(0), 1, { exampleCount: 1 });
  t.equal(okStale.staleness, 2, "a gradient 2 versions old is applied and reported as staleness 2");
  const refused = await b!.push(gradient(1), 0, { exampleCount: 1 }).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(refused?.code, Code.Aborted, "4 versions stale with a limit of 2 → Aborted");
  t.match(refused?.rawMessage ?? "", /4 versions stale \(limit 2\)/, "the message gives the staleness and the limit");
  t.equal(ts.server.run.aggregator.staleRejected, 1, "the refusal is counted");
  t.equal(ts.server.run.store.version, 4, "the refused gradient changed nothing");
});

t.test("ssp: a worker more than STALENESS_BOUND steps ahead of the slowest waits for it", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "ssp", STALENESS_BOUND: "1", LEARNING_RATE: "0.1" });
  const [fast, slow] = await workersWithParameters(ts, 2);
  const first = await settledWithin(fast!.push(gradient(1), 0, { exampleCount: 1 }), 2000);
  t.not(first, "pending", "clock 1 vs slowest 0: within the bound, returns at once");
  const second = fast!.push(gradient(1), 1, { exampleCount: 1 });
  t.equal(await settledWithin(second, 500), "pending", "clock 2 vs slowest 0: beyond the bound of 1, waits");
  t.equal(ts.server.run.store.version, 2, "the waiting worker's gradient was already applied (SSP applies on arrival)");
  await slow!.push(gradient(1), 0, { exampleCount: 1 });
  const released = await settledWithin(second, 2000);
  t.not(released, "pending", "once the slow worker advanced, the fast one is released");
});

t.test("ssp: a fast worker is released when the slow worker's lease runs out", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "ssp", STALENESS_BOUND: "0", LEASE_MS: "400" });
  const [fast, slow] = await workersWithParameters(ts, 2);
  void slow; // registered, then silent: its lease will run out
  const hb = setInterval(() => void fast!.heartbeat().catch(() => {}), 100);
  t.teardown(() => clearInterval(hb));
  const started = Date.now();
  const r = await settledWithin(fast!.push(gradient(1), 0, { exampleCount: 1 }), 5000);
  t.not(r, "pending", "the push returned after the silent worker's lease expired");
  t.ok(Date.now() - started >= 250, "it did wait for the lease rather than returning at once");
});
