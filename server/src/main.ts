/**
 * Parameter server entry point: `node server/src/main.ts`, configured by environment variables.
 */
import { createLogger, printMetricsJson } from "@distributed-ps/common/log.ts";
import { loadConfigOrExit } from "@distributed-ps/common/env.ts";
import { FLOAT16_CONVERSION } from "@distributed-ps/common/kernels/simd.ts";
import { exportModel, isExported } from "./checkpoint/export.ts";
import { serverEnvSchema } from "./config.ts";
import { scaleServicesToZero } from "./ecs/scale-down.ts";
import { watchWorkerServiceCount } from "./ecs/worker-count.ts";
import { joinUri, openBlobStore } from "./storage/blob-store.ts";
import { startObservability } from "./observability/start-observability.ts";
import { startServer } from "./server.ts";
import { shardIdentity, shardName } from "./run/shards.ts";
import { StatusReporter } from "./observability/status-reporter.ts";

const config = loadConfigOrExit("server", serverEnvSchema);
const log = createLogger("server", config.LOG_LEVEL);
const shard = shardIdentity(config);

// Elastic workers on ECS: the worker service's desired count is the run's worker count, so
// `aws ecs update-service --desired-count` or `terraform apply -var worker_count=…` resize the
// barrier of the running job (Terraform therefore leaves TOTAL_WORKERS_EXPECTED out of an
// unsharded server's task definition: changing it would replace the task). The first reading comes
// before the server listens, so the start quorum waits for the right number of workers. A sharded
// run keeps its count (SetWorkerCount refuses it too).
let applyCount: (desired: number) => void = () => {};
let firstReading: number | undefined;
const workerCountWatch =
  config.ECS_CLUSTER !== undefined && config.WORKER_SERVICE !== undefined && shard.count === 1
    ? watchWorkerServiceCount({
        cluster: config.ECS_CLUSTER,
        service: config.WORKER_SERVICE,
        intervalMs: config.WORKER_COUNT_POLL_MS,
        log,
        onCount: (desired) => applyCount(desired),
      })
    : undefined;
if (workerCountWatch !== undefined) {
  firstReading = await new Promise<number | undefined>((resolve) => {
    const fallback = setTimeout(() => resolve(undefined), 10_000);
    applyCount = (desired) => {
      clearTimeout(fallback);
      resolve(desired);
    };
  });
  if (firstReading === undefined) log.warn(`no desired count from ECS service ${config.WORKER_SERVICE} yet; starting with ${config.TOTAL_WORKERS_EXPECTED} workers`);
}

const server = await startServer({ ...config, TOTAL_WORKERS_EXPECTED: Math.max(1, firstReading ?? config.TOTAL_WORKERS_EXPECTED) }, log).catch((err: unknown) => {
  // A port in use, a checkpoint of another job, an unreadable checkpoint store: one line, exit 1.
  log.error(`cannot start: ${(err as Error).message}`);
  process.exit(1);
});
const { run } = server;
applyCount = (desired) => {
  if (desired !== run.membership.workerCount) run.resize(desired);
};
// A run resumed from a checkpoint has the count it had then; the service's count is the one wanted now.
if (firstReading !== undefined) applyCount(firstReading);
log.info(
  `listening on ${config.SERVER_HOST}:${server.port}: mode ${config.SERVER_MODE}, ${run.membership.workerCount} workers, ` +
    `optimizer ${run.updater.optimizer.name} lr ${config.LEARNING_RATE} (${config.LR_SCHEDULE}) on ${config.STEP_THREADS} thread(s), float16 conversion ${FLOAT16_CONVERSION}, lease ${config.LEASE_MS} ms`,
);
if (shard.count > 1) log.info(`shard ${shard.index} of ${shard.count} (${config.SHARD_ADDRESSES?.join(", ")})${shard.index === 0 ? "; coordinator" : ""}`);
const reporter = new StatusReporter(run, log, config.STATUS_INTERVAL_MS);
const observability = await startObservability(config, server, log);

const exportBase = config.EXPORT_URI ?? (config.CHECKPOINT_URI === undefined ? undefined : joinUri(config.CHECKPOINT_URI, "final"));
// A shard exports its own tensors; together the shard-<k>-of-<K>/ directories hold the whole model.
const exportUri = exportBase === undefined || shard.count === 1 ? exportBase : joinUri(exportBase, shardName(shard));

let stopping = false;
/**
 * Stops in an order that loses nothing: first no more calls (so no more updates), then the
 * checkpoint (and on completion the exported model, unless it is already there), then exit with
 * `exitCode` (1 instead if saving failed).
 */
async function stop(reason: string, complete: boolean, exitCode = 0): Promise<void> {
  if (stopping) return;
  stopping = true;
  // Before anything scales the worker service to zero: that is not a request to retire every slot.
  workerCountWatch?.stop();
  reporter.stop();
  log.info(`stopping: ${reason}`);
  await observability.close();
  await server.close();
  try {
    await server.checkpointer?.save(reason);
    await server.checkpointer?.close();
    if (complete && exportUri !== undefined && run.store.initialized) {
      const store = openBlobStore(exportUri, { s3Endpoint: config.S3_ENDPOINT });
      if (await isExported(run, store)) {
        log.info(`the model at version ${run.store.version} is already exported to ${store.description}/model.safetensors`);
      } else {
        const { bytes, onnx } = await exportModel(run, store);
        log.info(`exported the model (${(bytes / 1e6).toFixed(1)} MB) to ${store.description}/model.safetensors`);
        if ("bytes" in onnx) log.info(`exported the model as an ONNX inference graph (${(onnx.bytes / 1e6).toFixed(1)} MB) to ${store.description}/model.onnx`);
        else log.warn(`no model.onnx: ${onnx.skipped}`);
      }
    }
  } catch (err) {
    log.error(`saving the final state failed: ${(err as Error).message}`);
    exitCode = 1;
  }
  if (complete && config.ECS_CLUSTER !== undefined) {
    const services = [config.WORKER_SERVICE, config.SERVER_SERVICE].filter((s) => s !== undefined);
    await scaleServicesToZero({ cluster: config.ECS_CLUSTER, services }, log).catch((err: unknown) => {
      log.error(`could not scale the ECS services to zero (${(err as Error).message}); run: aws ecs update-service --cluster ${config.ECS_CLUSTER} --service <name> --desired-count 0`);
    });
  }
  printMetricsJson({ ...reporter.summary(), ...(shard.count > 1 ? { shard: shard.index, shard_count: shard.count } : {}), checkpoints_written: server.checkpointer?.saved ?? 0, resumed_from: run.restoredFrom ?? null });
  process.exit(exitCode);
}

run.on("complete", () => {
  log.info("every part of the data is trained and every worker has finished: the run is complete");
  if (config.EXIT_ON_COMPLETE) void stop("run complete", true);
});
run.on("stalled", (idleMs) => {
  log.error(
    `no worker has been connected for ${Math.round(idleMs / 1000)} s (NO_WORKERS_TIMEOUT_MS) and the run is not complete: stopping; ` +
      "a server started again on the same CHECKPOINT_URI continues from the checkpoint",
  );
  void stop("no workers", false, 3);
});
if (run.complete) {
  // Started on the checkpoints of a run that already completed (ECS restarted the task, or by hand).
  log.info(`the run in ${server.checkpointer?.description ?? "the checkpoint"} is already complete: nothing to train`);
  void stop("run already complete", true);
}
process.once("SIGTERM", () => void stop("SIGTERM", false));
process.once("SIGINT", () => void stop("SIGINT", false));
