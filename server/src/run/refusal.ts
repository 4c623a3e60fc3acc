/**
 * Refusals a worker acts on by their reason (ErrorDetail), not by their code alone: the run is
 * complete, the worker's job is another one.
 */
import { ConnectError, type Code } from "@connectrpc/connect";
import { ErrorDetailSchema, type ErrorReason } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";

/** An error a client acts on by its ErrorDetail reason rather than its code alone. */
export function refusal(message: string, code: Code, reason: ErrorReason): ConnectError {
  return new ConnectError(message, code, undefined, [{ desc: ErrorDetailSchema, value: { reason } }]);
}
