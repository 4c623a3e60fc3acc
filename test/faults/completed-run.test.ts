/**
 * A server started on the checkpoints of a run that already completed (ECS restarting the task, a
 * user re-running the command): the last checkpoint records who finished and that the run is
 * complete, so the server says so, exports the model if it is not there yet, and exits 0 — instead
 * of waiting forever for workers that finished long ago.
 */
import { readdir, rm } from "node:fs/promises";
import t from "tap";
import { decodeSafetensors } from "@distributed-ps/common/safetensors.ts";
import { readFile } from "node:fs/promises";
import { exitWithin, onLoopback, startProcess } from "../helpers/processes.ts";
import { startAnsweringServer } from "../helpers/server-status.ts";

t.test("restarted after a completed run: reports it complete, exports if missing, exits 0", async (t) => {
  const dir = t.testdir();
  const { port, env: serverEnv } = await onLoopback({
    TOTAL_WORKERS_EXPECTED: "2",
    SERVER_MODE: "sync",
    CHECKPOINT_URI: `${dir}/checkpoints`,
    EXPORT_URI: `${dir}/export`,
    // Only the end of the run writes checkpoints: the rule under test.
    CHECKPOINT_EVERY_STEPS: "0",
    CHECKPOINT_EVERY_SECONDS: "0",
  });
  const first = await startAnsweringServer(t, serverEnv);
  const workerEnv = { PARAMETER_SERVER_ADDRESS: `127.0.0.1:${port}`, EPOCHS: "1", TRAIN_EXAMPLES: "3200", TEST_EXAMPLES: "500" };
  const workers = [0, 1].map(() => startProcess(t, "worker/src/main.ts", workerEnv));
  t.same(await Promise.all(workers.map((w) => exitWithin(w, 60_000))), [0, 0], "both workers finished");
  t.equal(await exitWithin(first, 20_000), 0, "the first server completed the run and exited 0");
  const finalVersion = first.metrics()!.version;
  t.ok(first.lines.some((l) => /checkpoint \((slot \d finished|run complete)\)/.test(l)), "a checkpoint was written as the workers finished, although the version did not change");

  await rm(`${dir}/export`, { recursive: true });
  const second = startProcess(t, "server/src/main.ts", serverEnv);
  t.equal(await exitWithin(second, 20_000), 0, "a server started on the completed run's checkpoints exits 0 by itself");
  t.ok(second.lines.some((l) => /is already complete: nothing to train/.test(l)), "saying the run is already complete");
  const summary = second.metrics()!;
  t.equal(summary.run_complete, true, "its summary says run_complete");
  t.equal(summary.version, finalVersion, "at the final version");
  t.same(summary.registrations, [1, 1], "nobody registered again");
  t.ok(second.lines.some((l) => /exported the model/.test(l)), "the missing export was written again");
  t.ok(second.lines.some((l) => /exported the model as an ONNX inference graph/.test(l)), "model.onnx too: the workers' graph came back from the checkpoint");
  const model = decodeSafetensors(await readFile(`${dir}/export/model.safetensors`));
  t.equal(model.metadata.version, String(finalVersion), "the export holds the final version");

  const third = startProcess(t, "server/src/main.ts", serverEnv);
  t.equal(await exitWithin(third, 20_000), 0, "started once more: exits 0 again");
  t.ok(third.lines.some((l) => /already exported/.test(l)), "and leaves the export that is there alone");
  t.same((await readdir(`${dir}/export`)).sort(), ["model.json", "model.onnx", "model.safetensors"], "the export directory holds the model (both formats) and its description");
});
