/**
 * The start quorum on an injected clock: training starts when every unfinished slot has registered
 * with this process and the parameters exist, or START_TIMEOUT_MS after the first registration.
 */
import t from "tap";
import { createLogger } from "@distributed-ps/common/log.ts";
import { Membership } from "../src/run/membership.ts";
import { StartQuorum } from "../src/run/start-quorum.ts";

function quorum(workers: number, timeoutMs: number) {
  let now = 1_000;
  const lines: string[] = [];
  const log = createLogger("server", "info", (line) => lines.push(line));
  const membership = new Membership({ totalWorkers: workers, leaseMs: 10_000, now: () => now });
  const q = new StartQuorum({ membership, timeoutMs, log, now: () => now });
  const join = () => q.joined(membership.register(-1, "job", "w").index);
  return { q, join, lines, advance: (ms: number) => (now += ms) };
}

t.test("everyone registered and the parameters there: it starts, and stays started", async (t) => {
  const { q, join, lines } = quorum(2, 60_000);
  t.notOk(q.started(true), "nobody registered: not yet");
  join();
  t.notOk(q.started(true), "one of two: not yet");
  join();
  t.notOk(q.started(false), "both, but no parameters yet: not yet");
  t.ok(q.started(true), "both and the parameters: started");
  t.ok(q.started(false), "once started, always started");
  t.match(lines.join("\n"), /all 2 workers registered: training starts/, "said so once");
});

t.test("the timeout counts from the first registration, on the run's clock", async (t) => {
  const { q, join, lines, advance } = quorum(3, 5_000);
  t.equal(q.timeoutLeftMs(), 5_000, "the whole timeout before anyone registered");
  advance(60_000);
  join();
  t.equal(q.timeoutLeftMs(), 5_000, "time before the first registration does not count");
  advance(4_999);
  t.notOk(q.started(true), "1 ms before the timeout: not yet");
  advance(1);
  t.ok(q.started(true), "at the timeout: started with those present");
  t.equal(q.timeoutLeftMs(), 0, "nothing left");
  t.match(lines.join("\n"), /start timeout \(5000 ms\): training starts with 1 of 3 workers/);
});
