/**
 * Container health check: exits 0 when the parameter server on this host answers gRPC's standard
 * health check (grpc.health.v1.Health/Check, server/src/rpc/health.ts) with SERVING within two
 * seconds, 1 otherwise. `node server/src/healthcheck.ts`; reads SERVER_PORT (default 8000),
 * AUTH_TOKEN and TLS_CERT_FILE like the server.
 */
import { readFileSync } from "node:fs";
import { createClient } from "@connectrpc/connect";
import { grpcTransport } from "@distributed-ps/common/wire/client.ts";
import { Health, HealthCheckResponse_ServingStatus } from "@distributed-ps/common/gen/grpc/health/v1/health_pb.js";

const env = (name: string) => process.env[name]?.trim() || undefined;
const cert = env("TLS_CERT_FILE");
const health = createClient(
  Health,
  grpcTransport(`localhost:${env("SERVER_PORT") ?? "8000"}`, {
    authToken: env("AUTH_TOKEN"),
    // A self-signed certificate is its own CA.
    tls: cert === undefined ? undefined : { ca: readFileSync(cert) },
  }),
);
try {
  const { status } = await health.check({ service: "" }, { timeoutMs: 2000 });
  if (status !== HealthCheckResponse_ServingStatus.SERVING) throw new Error(`the server reports ${HealthCheckResponse_ServingStatus[status]}`);
  process.stdout.write("healthy: SERVING\n");
  process.exit(0);
} catch (err) {
  process.stderr.write(`unhealthy: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
