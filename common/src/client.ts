/**
 * A typed client for the parameter-server service over gRPC (HTTP/2), for the worker, the health
 * check, the status command and the benchmarks.
 */
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { bearerToken } from "./auth.ts";
import { ParameterServerService } from "./gen/paramserver/v1/parameter_server_pb.js";

export type ParameterServerClient = Client<typeof ParameterServerService>;

export interface ConnectOptions {
  maxMessageBytes?: number;
  /** Shared secret sent as a bearer token on every call (the server's AUTH_TOKEN). */
  authToken?: string | undefined;
  /** Use TLS, trusting `ca` (a PEM bundle, e.g. a self-signed server certificate) or, without it, the system CAs. */
  tls?: { ca?: string | Buffer } | undefined;
}

/** A gRPC (HTTP/2) client for `address` (host:port), uncompressed, with bounded message sizes. */
export function connectToServer(address: string, o: ConnectOptions = {}): ParameterServerClient {
  const maxMessageBytes = o.maxMessageBytes ?? (64 << 20);
  const transport = createGrpcTransport({
    baseUrl: `${o.tls ? "https" : "http"}://${address}`,
    interceptors: o.authToken === undefined ? [] : [bearerToken(o.authToken)],
    // Tensor bytes are incompressible: gzip would cost more time than it saves.
    acceptCompression: [],
    readMaxBytes: maxMessageBytes,
    writeMaxBytes: maxMessageBytes,
    nodeOptions: { settings: { initialWindowSize: 16 << 20 }, ...(o.tls?.ca !== undefined ? { ca: o.tls.ca } : {}) },
  });
  return createClient(ParameterServerService, transport);
}

