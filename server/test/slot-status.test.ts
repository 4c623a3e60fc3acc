/**
 * What GetStatus says of a slot whose worker is gone: free while it waits for a replacement, then
 * abandoned once REPLACEMENT_GRACE_MS has passed (its data went to the other workers) — until it is
 * retired or a worker registers into it.
 */
import t from "tap";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { ParameterServerService, SlotState, type SlotStatus } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { parseEnv } from "@distributed-ps/common/env.ts";
import { createLogger } from "@distributed-ps/common/log.ts";
import { runOptionsFrom, serverEnvSchema } from "../src/config.ts";
import { createService } from "../src/rpc/service.ts";
import { TrainingRun } from "../src/run/training-run.ts";

const LEASE_MS = 1000;
const GRACE_MS = 500;

t.test("a slot whose worker is gone: free during the replacement grace, then abandoned until retired or registered again", async (t) => {
  let now = Date.now(); // GetStatus says "last seen" against the real clock
  const config = parseEnv(serverEnvSchema, { TOTAL_WORKERS_EXPECTED: "2", LEASE_MS: String(LEASE_MS), REPLACEMENT_GRACE_MS: String(GRACE_MS), STEP_THREADS: "1" });
  const run = new TrainingRun(runOptionsFrom(config), createLogger("server", "error"), () => now);
  t.teardown(() => run.close());
  const client = createClient(ParameterServerService, createRouterTransport(({ service }) => service(ParameterServerService, createService(run, "127.0.0.1:0"))));
  const slot1 = async (): Promise<Pick<SlotStatus, "state" | "abandoned">> => {
    const s = (await client.getStatus({})).slots[1]!;
    return { state: s.state, abandoned: s.abandoned };
  };
  const register = () => run.membership.register(-1, "synthetic:mlp:seed=42", "w");
  const kept = register();
  register();
  // Only slot 0's worker is still calling.
  const advance = (ms: number) => {
    now += ms;
    run.membership.renew(kept, kept.token);
  };
  t.same(await slot1(), { state: SlotState.ACTIVE, abandoned: false }, "held: active");

  advance(LEASE_MS);
  t.same(await slot1(), { state: SlotState.FREE, abandoned: false }, "lease expired: free, waiting for a replacement");
  advance(GRACE_MS);
  t.same(await slot1(), { state: SlotState.FREE, abandoned: true }, "no replacement within the grace: abandoned");

  run.resize(1);
  t.same(await slot1(), { state: SlotState.RETIRED, abandoned: false }, "retired: shown as retired only");
  run.resize(2);
  t.same(await slot1(), { state: SlotState.FREE, abandoned: false }, "opened again: waits for a worker like a new slot");
  advance(LEASE_MS + GRACE_MS);
  t.same(await slot1(), { state: SlotState.FREE, abandoned: true }, "and is abandoned when none comes");
  t.equal(register().index, 1, "a newcomer registers into it");
  t.same(await slot1(), { state: SlotState.ACTIVE, abandoned: false }, "which is no longer abandoned");
});
