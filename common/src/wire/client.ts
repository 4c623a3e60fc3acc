/**
 * A typed client for the parameter-server service over gRPC (HTTP/2), for the worker, the health
 * check, the status command and the benchmarks. One HTTP/2 connection per client, managed by
 * Connect's Http2SessionManager and shared by the generated stubs and the hand-framed bulk calls.
 */
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { bearerToken } from "../auth.ts";
import { HTTP2_SETTINGS } from "./http2-settings.ts";
import { ParameterServerService } from "../gen/paramserver/v1/parameter_server_pb.js";

export type ParameterServerClient = Client<typeof ParameterServerService>;

/**
 * Where each client made by connectToServer connects, how, and over which HTTP/2 connection, so
 * that code given only the client can make the calls it frames by hand on that same connection
 * (the worker's bulk pulls and pushes, worker/src/wire/fast-channel.ts).
 */
const endpoints = new WeakMap<ParameterServerClient, Endpoint>();

export interface Endpoint {
  address: string;
  options: ConnectOptions;
  /** Connect's own manager of the client's HTTP/2 connection (reconnects, GOAWAY, idle). */
  sessions: Http2SessionManager;
}

/** The endpoint of a client made by connectToServer, if it was. */
export function endpointOf(client: ParameterServerClient): Endpoint | undefined {
  return endpoints.get(client);
}

/** The largest message a client reads or writes unless told otherwise (ConnectOptions.maxMessageBytes). */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 << 20;

export interface ConnectOptions {
  maxMessageBytes?: number;
  /** Shared secret sent as a bearer token on every call (the server's AUTH_TOKEN). */
  authToken?: string | undefined;
  /** Use TLS, trusting `ca` (a PEM bundle, e.g. a self-signed server certificate) or, without it, the system CAs. */
  tls?: { ca?: string | Buffer } | undefined;
}

/** A gRPC (HTTP/2) client for `address` (host:port), uncompressed, with bounded message sizes. */
export function connectToServer(address: string, o: ConnectOptions = {}): ParameterServerClient {
  const sessions = sessionManager(address, o);
  const client = createClient(ParameterServerService, grpcTransport(address, o, sessions));
  endpoints.set(client, { address, options: o, sessions });
  return client;
}

/** Connect's HTTP/2 connection manager for `address`, with the project's HTTP/2 settings. */
export function sessionManager(address: string, o: ConnectOptions = {}): Http2SessionManager {
  return new Http2SessionManager(baseUrl(address, o), {}, { settings: HTTP2_SETTINGS, ...(o.tls?.ca !== undefined ? { ca: o.tls.ca } : {}) });
}

/** What every call of a client made here goes through: the generated stubs' and the hand-framed ones. */
export function clientInterceptors(o: ConnectOptions): Interceptor[] {
  return o.authToken === undefined ? [] : [bearerToken(o.authToken)];
}

/** The gRPC transport connectToServer uses, for the server's other services too (health, reflection). */
export function grpcTransport(address: string, o: ConnectOptions = {}, sessions = sessionManager(address, o)): Transport {
  const maxMessageBytes = o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  return createGrpcTransport({
    baseUrl: baseUrl(address, o),
    interceptors: clientInterceptors(o),
    // Tensor bytes are incompressible: gzip would cost more time than it saves.
    acceptCompression: [],
    readMaxBytes: maxMessageBytes,
    writeMaxBytes: maxMessageBytes,
    sessionManager: sessions,
  });
}

function baseUrl(address: string, o: ConnectOptions): string {
  return `${o.tls ? "https" : "http"}://${address}`;
}

