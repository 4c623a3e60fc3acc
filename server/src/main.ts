/**
 * Parameter server entry point: `node server/src/main.ts`, configured by environment variables.
 */
import { createLogger, printMetricsJson } from "@distributed-ps/common/log.ts";
import { loadConfigOrExit } from "@distributed-ps/common/env.ts";
import { serverEnvSchema } from "./config.ts";
import { startServer } from "./server.ts";
import { StatusReporter } from "./status-reporter.ts";

const config = loadConfigOrExit("server", serverEnvSchema);
const log = createLogger("server", config.LOG_LEVEL);
const server = await startServer(config, log);
const { run } = server;
log.info(
  `listening on ${config.SERVER_HOST}:${server.port}: mode ${config.SERVER_MODE}, ${config.TOTAL_WORKERS_EXPECTED} workers, ` +
    `optimizer ${run.updater.optimizer.name} lr ${config.LEARNING_RATE} (${config.LR_SCHEDULE}), lease ${config.LEASE_MS} ms`,
);
const reporter = new StatusReporter(run, log, config.STATUS_INTERVAL_MS);

let stopping = false;
async function stop(reason: string, exitCode: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  reporter.stop();
  log.info(`stopping: ${reason}`);
  printMetricsJson(reporter.summary());
  await server.close();
  process.exit(exitCode);
}

run.on("complete", () => {
  log.info("every worker has finished: the run is complete");
  if (config.EXIT_ON_COMPLETE) void stop("run complete", 0);
});
process.once("SIGTERM", () => void stop("SIGTERM", 0));
process.once("SIGINT", () => void stop("SIGINT", 0));
