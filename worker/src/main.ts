/**
 * Worker entry point: `node worker/src/main.ts`, configured by environment variables.
 *
 * Registers with the parameter server (retrying with backoff while it is unreachable or every slot
 * is taken), initialises the parameters if chosen to, trains the parts of the data the server
 * assigns it until nothing is left or its slot is retired (the worker count was lowered), and prints
 * one METRICS_JSON line. If its session is lost mid-run (lease expired, server restarted) it registers
 * again and continues from the position the server has for its slot.
 */
import { readFileSync } from "node:fs";
import { Code, ConnectError } from "@connectrpc/connect";
import { loadConfigOrExit } from "@distributed-ps/common/env.ts";
import { Dtype, Mode } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { createLogger, printMetricsJson, type Logger } from "@distributed-ps/common/log.ts";
import { formatFingerprint } from "@distributed-ps/common/job-identity.ts";
import { workerEnvSchema, type WorkerEnv } from "./config.ts";
import { checkSliceHoldsABatch, DatasetError, loadDataset } from "./data/load-dataset.ts";
import { createEngine } from "./model/create-engine.ts";
import type { TrainingEngine } from "./model/engine.ts";
import { connectToServer, type ConnectOptions, type ParameterServerClient } from "@distributed-ps/common/wire/client.ts";
import { WorkerConnection, type ParameterConnection } from "./connection/worker-connection.ts";
import { classifyFailure, RetryBudgetExhausted, withRetry } from "./connection/retry.ts";
import { finishProgress, logSink, showProgress } from "./progress-display.ts";
import { connectToShards } from "./connection/sharded-connection.ts";
import { TopKCompressor } from "./topk.ts";
import { train } from "./training-loop.ts";

const WIRE_DTYPES = { fp32: Dtype.FLOAT32, fp16: Dtype.FLOAT16, bf16: Dtype.BFLOAT16 } as const;

/** Times in a row a worker may lose its session and register again without training a batch in between. */
const MAX_REJOINS = 10;

const config = loadConfigOrExit("worker", workerEnvSchema);
let log: Logger = createLogger("worker", config.LOG_LEVEL, logSink);

class RunAlreadyComplete extends Error {}

/** The current registration, for SIGTERM. */
let current: ParameterConnection | undefined;

// Stopped from outside (ECS scaling in, a deployment, docker stop): give the slot up at once, so a
// sync step does not wait a whole lease for this worker, then exit. A replacement, if one comes,
// continues from the slot's data position.
process.once("SIGTERM", () => {
  log.warn("SIGTERM: leaving the run; a replacement continues from this slot's data position");
  const leaving = current?.leave() ?? Promise.resolve();
  void leaving.catch((e: unknown) => log.warn(`could not leave: ${ConnectError.from(e).message}`)).finally(() => process.exit(143));
});

/**
 * Registers with the server at PARAMETER_SERVER_ADDRESS and, when it lists several shards, with
 * each of them under the same slot (keeping the sessions of `previous` that still work).
 */
async function register(
  client: ParameterServerClient,
  connectOptions: ConnectOptions,
  c: WorkerEnv,
  fingerprint: string,
  preferredSlot: number,
  previous: ParameterConnection | undefined,
): Promise<ParameterConnection> {
  const request = { preferredSlot, jobFingerprint: fingerprint, workerLabel: c.WORKER_LABEL };
  const retry = (address: string) => ({
    budgetMs: c.CONNECT_TIMEOUT_MS,
    retryable: (e: ConnectError) => ["unreachable", "busy"].includes(classifyFailure(e)),
    onRetry: (e: ConnectError, n: number, delay: number) =>
      log.warn(`register attempt ${n} at ${address} failed (${Code[e.code]}: ${e.rawMessage}); retrying in ${Math.round(delay)} ms`),
  });
  try {
    return await connectToShards({
      request,
      registerFirst: () =>
        withRetry(`connecting to the parameter server at ${c.PARAMETER_SERVER_ADDRESS}`, () => WorkerConnection.register(client, request, c.RPC_TIMEOUT_MS), retry(c.PARAMETER_SERVER_ADDRESS)),
      clientFor: (address) => connectToServer(address, connectOptions),
      callTimeoutMs: c.RPC_TIMEOUT_MS,
      retry,
      previous,
      log,
    });
  } catch (err) {
    if (err instanceof ConnectError && classifyFailure(err) === "run-complete") throw new RunAlreadyComplete(err.rawMessage);
    throw err;
  }
}

/** Makes sure the parameters exist on the server, creating them from this worker's model if asked. */
async function ensureParameters(conn: ParameterConnection, trainer: TrainingEngine): Promise<void> {
  for (;;) {
    const r = await conn.waitForParameters();
    if (r.ready) return;
    if (r.initialize) {
      log.info(`initialising the server's parameters (${trainer.parameters().length} tensors)`);
      await conn.initParameters(trainer.parameters());
      continue; // then wait, like everyone, for training to start
    }
    log.info("waiting for the parameters and for the other workers to register");
  }
}

async function main(): Promise<number> {
  const started = Date.now();
  const data = await loadDataset(config, log);
  const { trainer, description: engine } = await createEngine(
    config.MODEL,
    { inputShape: data.inputShape, classes: data.classes, seed: config.SEED },
    { engine: config.WORKER_ENGINE, threads: config.ENGINE_THREADS, tfBackend: config.TF_BACKEND },
    (m) => log.warn(m),
  );
  const fingerprint = formatFingerprint({
    dataset: config.DATASET,
    model: config.MODEL,
    seed: config.SEED,
    batch: config.BATCH_SIZE,
    epochs: config.EPOCHS,
    train: data.train.count,
    local: config.LOCAL_STEPS,
    classes: data.classes,
  });
  log.info(
    `dataset ${data.description}, ` +
      `model ${config.MODEL}, engine ${engine}`,
  );
  const connectOptions: ConnectOptions = {
    authToken: config.AUTH_TOKEN,
    tls: config.TLS || config.TLS_CA_FILE !== undefined ? { ca: config.TLS_CA_FILE === undefined ? undefined : readFileSync(config.TLS_CA_FILE) } : undefined,
  };
  const client = connectToServer(config.PARAMETER_SERVER_ADDRESS, connectOptions);

  // One compressor for the whole process: its residuals (what top-k has not sent yet) outlive a
  // lost session.
  const compressor = config.TOPK_RATIO > 0 ? new TopKCompressor(config.TOPK_RATIO) : undefined;

  // After a lost session, ask for the slot we had: its data position is ours.
  let preferredSlot = config.WORKER_SLOT;
  let previous: ParameterConnection | undefined;
  // Batches trained in this process, and how many had been when the session was last lost: a worker
  // that keeps losing its session without getting anything done gives up after MAX_REJOINS.
  let stepsTrained = 0;
  let stepsAtLastLoss = -1;
  let rejoinsInARow = 0;
  for (let rejoin = 0; ; rejoin++) {
    let conn: ParameterConnection;
    try {
      conn = await register(client, connectOptions, config, fingerprint, preferredSlot, previous);
    } catch (err) {
      if (err instanceof RunAlreadyComplete) {
        log.info(`nothing to do: ${err.message}`);
        return 0;
      }
      throw err;
    }
    preferredSlot = conn.slot;
    previous = conn;
    current = conn;
    log = createLogger(`worker ${conn.slot}`, config.LOG_LEVEL, logSink);
    log.info(`registered as slot ${conn.slot} of ${conn.config.totalWorkers} (mode ${Mode[conn.config.mode].toLowerCase()})`);
    checkSliceHoldsABatch(data.train.count, conn.config.totalWorkers, config.BATCH_SIZE);
    // A single missed heartbeat is harmless (the lease is four intervals long); say so only when
    // they keep failing.
    let missedHeartbeats = 0;
    const heartbeat = setInterval(() => {
      conn.heartbeat().then(
        () => (missedHeartbeats = 0),
        (e: unknown) => {
          if (++missedHeartbeats >= 2) log.warn(`${missedHeartbeats} heartbeats in a row failed: ${ConnectError.from(e).message}`);
        },
      );
    }, conn.config.heartbeatIntervalMs);
    try {
      await ensureParameters(conn, trainer);
      const result = await train(
        conn,
        trainer,
        data,
        {
          epochs: config.EPOCHS,
          batchSize: config.BATCH_SIZE,
          localSteps: config.LOCAL_STEPS,
          seed: config.SEED,
          progressIntervalMs: config.PROGRESS_INTERVAL_MS,
          pullDtype: WIRE_DTYPES[config.PULL_DTYPE],
          pushDtype: WIRE_DTYPES[config.PUSH_DTYPE],
          compressor,
          onProgress: (p) => {
            stepsTrained++;
            showProgress(p);
          },
        },
        log,
      );
      finishProgress();
      log.info(
        `${result.retired ? "retired" : "finished"}: test accuracy ${(result.finalTestAccuracy * 100).toFixed(2)}% after ${result.steps} steps in ${result.trainSeconds.toFixed(1)} s`,
      );
      log.info(`step time: ${result.profile.describe()}`);
      printMetricsJson({
        role: "worker",
        worker_id: conn.slot,
        total_workers: conn.config.totalWorkers,
        mode: Mode[conn.config.mode].toLowerCase(),
        dataset: config.DATASET,
        model: config.MODEL,
        engine,
        final_test_accuracy: result.finalTestAccuracy,
        final_test_loss: result.finalTestLoss,
        final_train_loss: result.finalTrainLoss,
        bayes_accuracy: data.bayesAccuracy,
        steps: result.steps,
        examples: result.examples,
        retried_batches: result.retriedBatches,
        rejoins: rejoin,
        retired: result.retired,
        train_time_s: result.trainSeconds,
        step_ms: result.profile.perStep(),
        wall_time_s: (Date.now() - started) / 1000,
        samples_per_s: result.examples / Math.max(result.trainSeconds, 1e-9),
      });
      return 0;
    } catch (raw) {
      // The server went away (stream reset, connection refused, shutting down) or no longer knows
      // our session (it restarted, or our lease ran out): register again and continue from the
      // slot's position. Anything else is not ours to retry.
      const failure = raw instanceof ConnectError ? classifyFailure(raw) : "fatal";
      if (failure !== "unreachable" && failure !== "session-lost") throw raw;
      rejoinsInARow = stepsTrained > stepsAtLastLoss ? 1 : rejoinsInARow + 1;
      stepsAtLastLoss = stepsTrained;
      if (rejoinsInARow > MAX_REJOINS) throw raw;
      const err = raw as ConnectError;
      log.warn(`lost the session (${Code[err.code]}${err.isWireError ? "" : ", no answer from the server"}: ${err.rawMessage}); registering again`);
    } finally {
      clearInterval(heartbeat);
    }
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    // Errors that explain themselves (unreachable server, bad dataset, a model that does not fit
    // the data) print as one line; anything else is a bug and keeps its stack.
    const explained = err instanceof RetryBudgetExhausted || err instanceof ConnectError || err instanceof DatasetError || err instanceof RangeError;
    const message = explained ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
    log.error(message);
    process.exit(1);
  },
);
