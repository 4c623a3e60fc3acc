/**
 * Parameter server entry point: `node server/src/main.ts`, configured by environment variables.
 * Starts the server (after the ECS worker count, when there is one), the status line and the
 * dashboard, and stops in order (shutdown.ts) on completion, on a stall, or on a signal.
 */
import { createLogger } from "@distributed-ps/common/log.ts";
import { loadConfigOrExit } from "@distributed-ps/common/env.ts";
import { FLOAT16_CONVERSION } from "@distributed-ps/common/kernels/simd.ts";
import { serverEnvSchema, shardLayout } from "./config.ts";
import { elasticWorkerCount } from "./ecs/elastic-worker-count.ts";
import { startObservability } from "./observability/start-observability.ts";
import { StatusReporter } from "./observability/status-reporter.ts";
import { shardIdentity, shardName } from "./run/shards.ts";
import { startServer } from "./server.ts";
import { shutdown } from "./shutdown.ts";
import { joinUri } from "./storage/open-blob-store.ts";

const config = loadConfigOrExit("server", serverEnvSchema);
const log = createLogger("server", config.LOG_LEVEL);
const shard = shardIdentity(shardLayout(config));

const workerCount = await elasticWorkerCount({
  ecs:
    config.ECS_CLUSTER !== undefined && config.WORKER_SERVICE !== undefined && shard.count === 1
      ? { cluster: config.ECS_CLUSTER, service: config.WORKER_SERVICE, pollMs: config.WORKER_COUNT_POLL_MS }
      : undefined,
  configured: config.TOTAL_WORKERS_EXPECTED,
  log,
});

const server = await startServer({ ...config, TOTAL_WORKERS_EXPECTED: workerCount.initial }, log).catch((err: unknown) => {
  // A port in use, a checkpoint of another job, an unreadable checkpoint store: one line, exit 1.
  log.error(`cannot start: ${(err as Error).message}`);
  process.exit(1);
});
const { run } = server;
workerCount.follow(run);
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

const stop = shutdown({ config, server, reporter, observability, stopWatching: () => workerCount.stop(), exportUri, shard, log });

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
