/**
 * How the server stops, in an order that loses nothing: first no more calls (so no more updates),
 * then the checkpoint, then — on completion — the exported model (unless it is already there) and
 * the ECS services scaled to zero, then the METRICS_JSON summary and the exit.
 */
import { printMetricsJson, type Logger } from "@distributed-ps/common/log.ts";
import { exportModel, isExported } from "./checkpoint/export.ts";
import type { ServerEnv } from "./config.ts";
import { scaleServicesToZero } from "./ecs/scale-down.ts";
import type { Observability } from "./observability/start-observability.ts";
import type { StatusReporter } from "./observability/status-reporter.ts";
import type { ShardIdentity } from "./run/shards.ts";
import type { RunningServer } from "./server.ts";
import { openBlobStore } from "./storage/open-blob-store.ts";

export interface ShutdownParts {
  config: ServerEnv;
  server: RunningServer;
  reporter: StatusReporter;
  observability: Observability;
  /** Stops following the ECS worker service: before anything scales it to zero, which is not a request to retire every slot. */
  stopWatching: () => void;
  /** Where the model goes on completion, if anywhere. */
  exportUri: string | undefined;
  shard: ShardIdentity;
  log: Logger;
}

/**
 * Returns `stop(reason, complete, exitCode)`: stops once (later calls do nothing) and exits with
 * `exitCode`, or 1 if saving the final state failed.
 */
export function shutdown(p: ShutdownParts): (reason: string, complete: boolean, exitCode?: number) => Promise<void> {
  const { config, server, reporter, observability, exportUri, shard, log } = p;
  const { run } = server;
  let stopping = false;
  return async (reason, complete, exitCode = 0) => {
    if (stopping) return;
    stopping = true;
    p.stopWatching();
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
    printMetricsJson({
      ...reporter.summary(),
      ...(shard.count > 1 ? { shard: shard.index, shard_count: shard.count } : {}),
      checkpoints_written: server.checkpointer?.saved ?? 0,
      resumed_from: run.restoredFrom ?? null,
    });
    process.exit(exitCode);
  };
}
