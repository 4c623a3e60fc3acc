/**
 * The run's identity given to the server (as `make test-local` and Terraform do): a worker started
 * with the wrong SEED is refused even when it is the first to register, says why in one line and
 * exits 1 at once; the correct workers then train the run.
 */
import t from "tap";
import { exitWithin, onLoopback, startProcess } from "../helpers/processes.ts";
import { startAnsweringServer } from "../helpers/server-status.ts";

t.test("a worker with the wrong SEED registering first is refused; the right ones train", async (t) => {
  const identity = { DATASET: "synthetic", MODEL: "mlp", SEED: "42", BATCH_SIZE: "32", EPOCHS: "1", TRAIN_EXAMPLES: "3200" };
  const { port, env: serverEnv } = await onLoopback({ ...identity, TOTAL_WORKERS_EXPECTED: "2" });
  const server = await startAnsweringServer(t, serverEnv);
  const env = { ...identity, PARAMETER_SERVER_ADDRESS: `127.0.0.1:${port}`, TEST_EXAMPLES: "500" };
  const wrong = startProcess(t, "worker/src/main.ts", { ...env, SEED: "7" });
  t.equal(await exitWithin(wrong, 30_000), 1, "the worker with SEED=7 exits 1");
  const error = wrong.lines.find((l) => /ERROR/.test(l)) ?? "";
  t.match(error, /job differs from the run's: seed 7 where the server's SEED is 42/, `in one line that says why: ${error}`);
  t.notOk(wrong.lines.some((l) => /register attempt \d+/.test(l)), "without retrying: registering again cannot help");
  t.notOk(server.lines.some((l) => /registered by/.test(l)), "it never held a slot");

  const right = [0, 1].map(() => startProcess(t, "worker/src/main.ts", env));
  t.same(await Promise.all(right.map((w) => exitWithin(w, 60_000))), [0, 0], "the correct workers registered and finished");
  t.equal(await exitWithin(server, 20_000), 0, "and the run completed");
  t.same(server.metrics()!.registrations, [1, 1], "trained by them alone");
});
