/**
 * A push whose session expired while its gradient was streaming in must not count: by then a
 * replacement may hold the slot and will compute the same batch again.
 */
import t from "tap";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { Dtype, PushGradientsRequestSchema } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { chunkTensors } from "@distributed-ps/common/tensor-stream/chunk-tensors.ts";
import { gradient, startTestServer } from "../helpers/test-server.ts";
import { waitUntil } from "../helpers/wait.ts";

t.test("a gradient from a session that expired mid-upload is refused, and changes nothing", async (t) => {
  // The run's clock, moved past the lease by hand instead of waiting it out; strictly increasing,
  // so that every renewal of the lease is seen.
  let skipped = 0;
  let last = 0;
  const now = () => (last = Math.max(Date.now() + skipped, last + 1));
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", SERVER_MODE: "async", LEASE_MS: "300" }, { now });
  const old = await ts.register("old");
  await old.waitForParameters();
  await old.initParameters((await import("../helpers/test-server.ts")).initialParameters());

  let resume!: () => void;
  const stalled = new Promise<void>((r) => (resume = r));
  const chunks = [...chunkTensors(gradient(1), Dtype.FLOAT32, 8)];
  async function* messages() {
    yield create(PushGradientsRequestSchema, {
      message: { case: "header", value: { session: old.session, tensorCount: 2, baseVersion: 0, exampleCount: 1, position: { epoch: 0, batch: 1 } } },
    });
    yield create(PushGradientsRequestSchema, { message: { case: "chunk", value: chunks[0]! } });
    await stalled; // the upload stalls for longer than the lease
    for (const c of chunks.slice(1)) yield create(PushGradientsRequestSchema, { message: { case: "chunk", value: c } });
  }
  const slot = ts.server.run.membership.slots[old.slot]!;
  const seen = slot.lastSeen;
  const push = old.client.pushGradients(messages()).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  // Once the first chunk has arrived (it renews the lease), the upload stalls for longer than the lease.
  await waitUntil(() => slot.lastSeen !== seen, "the first chunk renewing the lease");
  skipped += 800;
  const replacement = await ts.register("replacement");
  t.equal(replacement.slot, old.slot, "the replacement took the expired slot");
  t.same([replacement.resumeFrom?.epoch, replacement.resumeFrom?.batch], [0, 0], "and was told to start at batch 0");
  resume();
  const err = await push;
  t.equal(err?.code, Code.FailedPrecondition, "the stale upload is refused with FailedPrecondition");
  t.equal(ts.server.run.store.version, 0, "it was not applied");
  t.equal(ts.server.run.membership.slots[0]!.position.batch, 0, "and did not move the slot's data position");
});
