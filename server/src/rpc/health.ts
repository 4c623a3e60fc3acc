/**
 * gRPC's standard health service (grpc.health.v1.Health, proto/grpc/health/v1/), so that load
 * balancers, grpc_health_probe, grpcurl and the container's own health check (healthcheck.ts) ask
 * the way every gRPC server is asked. The overall status ("") and the parameter server's service
 * are SERVING until the server starts shutting down, NOT_SERVING from then on.
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { Health, HealthCheckResponse_ServingStatus as Status, HealthCheckResponseSchema } from "@distributed-ps/common/gen/grpc/health/v1/health_pb.js";
import { ParameterServerService } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";

/** The services whose health is reported: the server as a whole ("") and its one service. */
const SERVICES = ["", ParameterServerService.typeName];

export function createHealthService(shutdown: AbortSignal): ServiceImpl<typeof Health> {
  const status = () => create(HealthCheckResponseSchema, { status: shutdown.aborted ? Status.NOT_SERVING : Status.SERVING });
  return {
    check(req) {
      if (!SERVICES.includes(req.service)) throw new ConnectError(`unknown service "${req.service}"; this server reports ${SERVICES.map((s) => `"${s}"`).join(", ")}`, Code.NotFound);
      return status();
    },
    list() {
      return { statuses: Object.fromEntries(SERVICES.map((s) => [s, status()])) };
    },
    async *watch(req, ctx) {
      if (!SERVICES.includes(req.service)) {
        // As the protocol says: an unknown service is reported, and the call stays open.
        yield create(HealthCheckResponseSchema, { status: Status.SERVICE_UNKNOWN });
      } else {
        yield status();
        if (shutdown.aborted) return;
      }
      const ended = AbortSignal.any([shutdown, ctx.signal]);
      await new Promise<void>((resolve) => ended.addEventListener("abort", () => resolve(), { once: true }));
      if (shutdown.aborted && SERVICES.includes(req.service)) yield status();
    },
  };
}
