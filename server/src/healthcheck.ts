/**
 * Container health check: exits 0 when the parameter server on this host answers GetStatus within
 * two seconds, 1 otherwise. `node server/src/healthcheck.ts`; reads SERVER_PORT (default 8000),
 * AUTH_TOKEN and TLS_CERT_FILE like the server.
 */
import { readFileSync } from "node:fs";
import { connectToServer } from "@distributed-ps/common/client.ts";
import { SlotState } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";

const env = (name: string) => process.env[name]?.trim() || undefined;
const cert = env("TLS_CERT_FILE");
const client = connectToServer(`localhost:${env("SERVER_PORT") ?? "8000"}`, {
  authToken: env("AUTH_TOKEN"),
  // A self-signed certificate is its own CA.
  tls: cert === undefined ? undefined : { ca: readFileSync(cert) },
});
try {
  const status = await client.getStatus({}, { timeoutMs: 2000 });
  process.stdout.write(`healthy: version ${status.version}, ${status.slots.filter((s) => s.state === SlotState.ACTIVE).length} active workers\n`);
  process.exit(0);
} catch (err) {
  process.stderr.write(`unhealthy: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
