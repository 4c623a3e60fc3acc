/**
 * End to end: the `make test-local` path (scripts/run-local.ts: a real server process and real
 * worker processes over loopback gRPC) with 2 workers reaches its accuracy target in every mode,
 * and reports failure when the target is out of reach.
 */
import t from "tap";
import { runLocal } from "./helpers/run-local.ts";

for (const mode of ["sync", "async", "ssp"]) {
  t.test(`${mode}: 2 workers train to the accuracy target`, async (t) => {
    const dir = t.testdir();
    const r = await runLocal({ WORKERS: "2", MODE: mode, EPOCHS: "3", ACCURACY_TARGET: "0.75" }, dir);
    t.equal(r.code, 0, "run-local exits 0");
    if (r.code !== 0) t.comment(r.output.slice(-3000));
    t.equal(r.run?.mode, mode, "the run used the requested mode");
    t.equal(r.run?.workers, 2, "with 2 workers");
    t.ok((r.run?.final_test_accuracy ?? 0) >= 0.75, `final test accuracy ${r.run?.final_test_accuracy} reaches 0.75`);
    t.match(r.output, /"role":"server".*"run_complete":true/, "the server printed its summary with the run complete");
    t.equal((r.output.match(/"role":"worker"/g) ?? []).length, 2, "each worker printed its METRICS_JSON line");
  });
}

t.test("an unreachable accuracy target makes the run fail", async (t) => {
  const r = await runLocal({ WORKERS: "2", MODE: "async", EPOCHS: "1", ACCURACY_TARGET: "0.99" }, t.testdir());
  t.equal(r.code, 1, "run-local exits 1");
  t.equal(r.run?.passed, false, "the summary says it did not pass");
  t.match(r.output, /below the target 99\.00%/, "and says why");
});

t.test("both engines train the same job to the same accuracy (sync: the same batches in the same order)", async (t) => {
  const runs = await Promise.all(["onnxruntime", "tfjs"].map(async (engine) => {
    const dir = t.testdir();
    return { engine, r: await runLocal({ WORKERS: "2", MODE: "sync", EPOCHS: "3", ACCURACY_TARGET: "0.75", WORKER_ENGINE: engine }, `${dir}-${engine}`) };
  }));
  for (const { engine, r } of runs) {
    t.equal(r.code, 0, `${engine}: run-local exits 0`);
    t.match(r.output, new RegExp(`"engine":"${engine}`), `${engine}: the workers trained with it`);
  }
  const [onnx, tfjs] = runs.map(({ r }) => r.run?.final_test_accuracy ?? 0);
  t.ok(Math.abs(onnx! - tfjs!) <= 0.01, `final test accuracy ${onnx} (onnxruntime) and ${tfjs} (tfjs) within one point`);
});
