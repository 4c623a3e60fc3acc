/**
 * PushHeader.return_parameters: a push's answer brings the parameters a pull would fetch right
 * after it — exactly, with their version — on both push paths (the hand-framed one and Connect's,
 * which sparse pushes take), in sync and async mode; and none when the model does not fit in one
 * message, so the worker pulls as before.
 */
import t from "tap";
import type { ParameterStore } from "../../server/src/store/parameter-store.ts";
import { gradient, startTestServer, values, workersWithParameters } from "../helpers/test-server.ts";

/**
 * Resolves once no snapshot of `store` is held. An answer's parameters are written from a snapshot,
 * released when the server's side of the stream is done, a moment after the worker has read it.
 */
async function noSnapshotHeld(store: ParameterStore): Promise<number> {
  for (let i = 0; i < 200 && store.snapshotsHeld > 0; i++) await new Promise((r) => setImmediate(r));
  return store.snapshotsHeld;
}

t.test("async: the answer carries the parameters after this gradient, as a pull gives them", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", SERVER_MODE: "async", LEARNING_RATE: "1" });
  const [w] = await workersWithParameters(ts, 1);
  const answer = await w!.push(gradient(1), 0, { exampleCount: 1, returnParameters: true });
  const carried = w!.parametersIn(answer);
  t.ok(carried, "the answer carries parameters");
  t.equal(carried?.version, 1, "at the version the push produced");
  t.same(values(carried!.tensors), { w: [0, 1, 2, 3], b: [-0.5, -1.5] }, "updated by the gradient");
  const pulled = await w!.pull();
  t.same(carried!.tensors.map((x) => [x.name, x.shape]), pulled.tensors.map((x) => [x.name, x.shape]), "the same tensors, names and shapes, in the same order as a pull");
  t.same(values(pulled.tensors), values(carried!.tensors), "and the same values");

  // A sparse push (top-k) goes through Connect's handler: the same answer.
  const sparse = await w!.push(
    [
      { name: "w", shape: [2, 2], values: Float32Array.of(1), indices: Uint32Array.of(3) },
      { name: "b", shape: [2], values: Float32Array.of(1), indices: Uint32Array.of(0) },
    ],
    1,
    { exampleCount: 1, returnParameters: true },
  );
  t.same(values(w!.parametersIn(sparse)!.tensors), { w: [0, 1, 2, 2], b: [-1.5, -1.5] }, "a sparse push's answer (Connect's path) too");
  t.equal(w!.parametersIn(await w!.push(gradient(0), 2, { exampleCount: 1 })), undefined, "not asked: none");
  t.equal(await noSnapshotHeld(ts.server.run.store), 0, "every answer's snapshot released (both paths)");
});

t.test("sync: each worker's answer carries the step's result", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "sync", LEARNING_RATE: "1" });
  const [a, b] = await workersWithParameters(ts, 2);
  const [ra, rb] = await Promise.all([a!.push(gradient(1), 0, { exampleCount: 1, returnParameters: true }), b!.push(gradient(3), 0, { exampleCount: 1, returnParameters: true })]);
  for (const [name, conn, answer] of [["a", a!, ra], ["b", b!, rb]] as const) {
    const carried = conn.parametersIn(answer)!;
    t.equal(carried.version, 1, `${name}: version 1`);
    t.same(values(carried.tensors), { w: [-1, 0, 1, 2], b: [-1.5, -2.5] }, `${name}: the average of both gradients applied`);
  }
  t.equal(await noSnapshotHeld(ts.server.run.store), 0, "both answers' snapshots released");
});

t.test("a push answered while the next version is applied: the answer keeps its own version's values", async (t) => {
  // Two async workers pushing at once: the second gradient is applied while the first answer may
  // still be written from its snapshot; neither answer may see the other's update half-applied.
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "async", LEARNING_RATE: "1" });
  const [a, b] = await workersWithParameters(ts, 2);
  for (let round = 0; round < 20; round++) {
    const base = ts.server.run.store.version;
    const answers = await Promise.all([a!.push(gradient(1), base, { exampleCount: 1, returnParameters: true }), b!.push(gradient(1), base, { exampleCount: 1, returnParameters: true })]);
    const carried = answers.map((r, i) => [a, b][i]!.parametersIn(r)!);
    const versions = carried.map((c) => c.version).sort((x, y) => x - y);
    t.same(versions, [base + 1, base + 2], `round ${round}: one answer per version`);
    // Every gradient(1) step lowers w by [1, 1, 1, 1]: version v holds w0 - v.
    for (const c of carried) t.same(values(c.tensors).w, [0, 1, 2, 3].map((x) => x + 1 - c.version), `round ${round}: version ${c.version}'s values`);
  }
  t.equal(await noSnapshotHeld(ts.server.run.store), 0, "no snapshot held afterwards");
});

t.test("a model over one message: no parameters in the answer, and the push still counts", async (t) => {
  // 300 float32 values are 1,200 bytes, over a max_chunk_bytes of 1,024.
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1", SERVER_MODE: "async", LEARNING_RATE: "1", MAX_CHUNK_BYTES: "1024" });
  const w = await ts.register();
  t.ok((await w.waitForParameters()).initialize, "asked to initialise");
  await w.initParameters([{ name: "w", shape: [300], data: new Float32Array(300).fill(2) }]);
  const answer = await w.push([{ name: "w", shape: [300], data: new Float32Array(300).fill(1) }], 0, { exampleCount: 1, returnParameters: true });
  t.equal(answer.version, 1, "applied");
  t.equal(w.parametersIn(answer), undefined, "no parameters: the worker pulls");
  t.equal(answer.parametersVersion, 0, "and no version for them");
  t.same(Array.from((await w.pull()).tensors[0]!.data.subarray(0, 3)), [1, 1, 1], "the pull has the update");
});
