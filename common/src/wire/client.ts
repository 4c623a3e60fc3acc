/**
 * A typed client for the parameter-server service over gRPC (HTTP/2), for the worker, the health
 * check, the status command and the benchmarks.
 */
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { bearerToken } from "../auth.ts";
import { HTTP2_SETTINGS } from "./http2-settings.ts";
import { ParameterServerService } from "../gen/paramserver/v1/parameter_server_pb.js";

export type ParameterServerClient = Client<typeof ParameterServerService>;

/**
 * Where each client made by connectToServer connects and how, so that code given only the client
 * can open a second connection to the same server with the same settings (the worker's hand-framed
 * pulls and pushes, worker/src/wire/fast-channel.ts).
 */
const endpoints = new WeakMap<ParameterServerClient, Endpoint>();

export interface Endpoint {
  address: string;
  options: ConnectOptions;
}

/** The endpoint of a client made by connectToServer, if it was. */
export function endpointOf(client: ParameterServerClient): Endpoint | undefined {
  return endpoints.get(client);
}

export interface ConnectOptions {
  maxMessageBytes?: number;
  /** Shared secret sent as a bearer token on every call (the server's AUTH_TOKEN). */
  authToken?: string | undefined;
  /** Use TLS, trusting `ca` (a PEM bundle, e.g. a self-signed server certificate) or, without it, the system CAs. */
  tls?: { ca?: string | Buffer } | undefined;
}

/** A gRPC (HTTP/2) client for `address` (host:port), uncompressed, with bounded message sizes. */
export function connectToServer(address: string, o: ConnectOptions = {}): ParameterServerClient {
  const client = createClient(ParameterServerService, grpcTransport(address, o));
  endpoints.set(client, { address, options: o });
  return client;
}

/** The gRPC transport connectToServer uses, for the server's other services (health, reflection). */
export function grpcTransport(address: string, o: ConnectOptions = {}): Transport {
  const maxMessageBytes = o.maxMessageBytes ?? (64 << 20);
  return createGrpcTransport({
    baseUrl: `${o.tls ? "https" : "http"}://${address}`,
    interceptors: o.authToken === undefined ? [] : [bearerToken(o.authToken)],
    // Tensor bytes are incompressible: gzip would cost more time than it saves.
    acceptCompression: [],
    readMaxBytes: maxMessageBytes,
    writeMaxBytes: maxMessageBytes,
    nodeOptions: { settings: HTTP2_SETTINGS, ...(o.tls?.ca !== undefined ? { ca: o.tls.ca } : {}) },
  });
}

