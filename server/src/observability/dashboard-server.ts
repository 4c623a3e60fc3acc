/**
 * The dashboard's HTTP/1.1 listener (browsers cannot speak the cleartext HTTP/2 of the gRPC port):
 *
 *   GET  /                  the live dashboard (static page; it polls the two RPCs below)
 *   POST /paramserver.v1.ParameterServerService/GetStatus          Connect protocol, JSON or binary
 *   POST /paramserver.v1.TelemetryService/GetMetricsHistory        Connect protocol, JSON or binary
 *   GET  /metrics           Prometheus text format
 *   GET  /healthz           200 while the server runs
 *
 * Read-only: of the parameter-server service only GetStatus is mounted here; every other RPC
 * answers Unimplemented on this port.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { ParameterServerService } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { TelemetryService } from "@distributed-ps/common/gen/paramserver/v1/telemetry_pb.js";
import { createService } from "../rpc/service.ts";
import type { TrainingRun } from "../run/training-run.ts";
import { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from "./prometheus.ts";
import { createTelemetryService, type CheckpointView } from "./telemetry-service.ts";
import type { RunTelemetry } from "./telemetry.ts";

/** The page's files, read once at start: name → [content type, bytes]. */
const PAGE_FILES: Record<string, string> = {
  "/": "index.html",
  "/index.html": "index.html",
  "/dashboard.js": "dashboard.js",
  "/line-chart.js": "line-chart.js",
  "/style.css": "style.css",
};
const CONTENT_TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
};

function loadPage(): Map<string, { type: string; body: Buffer }> {
  const files = new Map<string, { type: string; body: Buffer }>();
  for (const [route, file] of Object.entries(PAGE_FILES)) {
    const ext = file.slice(file.lastIndexOf(".") + 1);
    files.set(route, { type: CONTENT_TYPES[ext] ?? "application/octet-stream", body: readFileSync(new URL(`./page/${file}`, import.meta.url)) });
  }
  return files;
}

export interface DashboardServer {
  readonly port: number;
  /** The URL to open, with the host as the listener sees it (localhost for a wildcard address). */
  readonly url: string;
  close(): Promise<void>;
}

export interface DashboardOptions {
  run: TrainingRun;
  telemetry: RunTelemetry;
  host: string;
  port: number;
  /** host:port of the gRPC listener, for the RunConfig GetStatus returns. */
  grpcAddress: string;
  /** Checkpointing state, when the server checkpoints. */
  checkpoint?: () => CheckpointView | undefined;
}

export async function startDashboard(o: DashboardOptions): Promise<DashboardServer> {
  const page = loadPage();
  const status = createService(o.run, o.grpcAddress);
  const handler = connectNodeAdapter({
    routes: (router) => {
      router.service(ParameterServerService, { getStatus: status.getStatus });
      router.service(TelemetryService, createTelemetryService(o.telemetry, o.checkpoint));
    },
    // Requests are small; answers (a long run's history) are bounded by the telemetry caps.
    readMaxBytes: 64 << 10,
    fallback: (req, res) => {
      const path = new URL(req.url ?? "/", "http://localhost").pathname;
      const send = (status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}) => {
        res.writeHead(status, { "Content-Type": type, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", ...extra });
        res.end(body);
      };
      if (req.method !== "GET" && req.method !== "HEAD") return send(405, "text/plain", "method not allowed\n", { Allow: "GET, HEAD" });
      if (path === "/metrics") return send(200, PROMETHEUS_CONTENT_TYPE, renderPrometheus(o.run, o.telemetry));
      if (path === "/healthz") return send(200, "application/json", `${JSON.stringify({ ok: true, version: o.run.store.version })}\n`);
      const file = page.get(path);
      if (file === undefined) return send(404, "text/plain", `not found: ${path}\n`);
      // The page loads only its own scripts and styles and talks only to this origin.
      send(200, file.type, file.body, { "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'" });
    },
  });

  const server = http.createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = o.host === "0.0.0.0" || o.host === "::" ? "localhost" : o.host.includes(":") ? `[${o.host}]` : o.host;
  return {
    port,
    url: `http://${shownHost}:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
