/**
 * Everything that lets people watch a run, started from the server's configuration: the telemetry
 * that samples it, the dashboard listener (page, /metrics, /healthz) and the CloudWatch EMF lines.
 * None of it is needed for training: a dashboard port that cannot be bound is reported and skipped.
 */
import type { Logger } from "@distributed-ps/common/log.ts";
import type { ServerEnv } from "../config.ts";
import type { RunningServer } from "../server.ts";
import { startDashboard, type DashboardServer } from "./dashboard-server.ts";
import { EmfEmitter } from "./emf.ts";
import { publicConfiguration, RunTelemetry } from "./telemetry.ts";

export interface Observability {
  readonly telemetry: RunTelemetry;
  readonly dashboard: DashboardServer | undefined;
  /** Emits the last EMF lines and stops the timers and the listener. */
  close(): Promise<void>;
}

export async function startObservability(config: ServerEnv, server: RunningServer, log: Logger): Promise<Observability> {
  const { run } = server;
  const telemetry = new RunTelemetry(run, { configuration: publicConfiguration(config) });
  const grpcAddress = `${config.SERVER_HOST === "0.0.0.0" ? "localhost" : config.SERVER_HOST}:${server.port}`;
  const checkpoint = () => {
    const c = server.checkpointer;
    return c === undefined ? undefined : { destination: c.description, saved: c.saved, lastKey: c.lastKey };
  };
  let dashboard: DashboardServer | undefined;
  if (config.DASHBOARD_ENABLED) {
    const host = config.DASHBOARD_HOST ?? config.SERVER_HOST;
    try {
      dashboard = await startDashboard({ run, telemetry, host, port: config.DASHBOARD_PORT, grpcAddress, checkpoint });
      log.info(`dashboard on ${dashboard.url} (Prometheus metrics at ${dashboard.url}metrics)`);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      log.warn(
        `dashboard not started: cannot listen on ${host}:${config.DASHBOARD_PORT} (${e.code ?? e.message}); ` +
          "set DASHBOARD_PORT to a free port (0 = any) or DASHBOARD_ENABLED=false",
      );
    }
  }
  const emf = config.METRICS_EMF
    ? new EmfEmitter({ run, telemetry, namespace: config.METRICS_EMF_NAMESPACE, intervalMs: config.STATUS_INTERVAL_MS || 60_000 })
    : undefined;
  return {
    telemetry,
    dashboard,
    close: async () => {
      emf?.flush();
      emf?.stop();
      telemetry.close();
      await dashboard?.close();
    },
  };
}
