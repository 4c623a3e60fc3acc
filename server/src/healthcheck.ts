/**
 * Container health check: exits 0 when the parameter server on this host answers GetStatus within
 * two seconds, 1 otherwise. `node server/src/healthcheck.ts` (reads SERVER_PORT, default 8000).
 */
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ParameterServerService, SlotState } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";

const port = process.env.SERVER_PORT?.trim() || "8000";
const client = createClient(ParameterServerService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
try {
  const status = await client.getStatus({}, { timeoutMs: 2000 });
  process.stdout.write(`healthy: version ${status.version}, ${status.slots.filter((s) => s.state === SlotState.ACTIVE).length} active workers\n`);
  process.exit(0);
} catch (err) {
  process.stderr.write(`unhealthy: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
