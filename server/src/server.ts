/**
 * The HTTP/2 listener: Connect routes for the parameter-server service, served as gRPC (and the
 * Connect and gRPC-Web protocols, which the same handler speaks), without compression — tensor
 * bytes do not compress, and gzip costs more time than the bytes it saves.
 */
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import type { Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Health } from "@distributed-ps/common/gen/grpc/health/v1/health_pb.js";
import { listenerSettings, widenConnectionWindow } from "@distributed-ps/common/wire/http2-settings.ts";
import { ParameterServerService } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { requireBearerToken } from "@distributed-ps/common/auth.ts";
import type { Logger } from "@distributed-ps/common/log.ts";
import { runOptionsFrom, type ServerEnv } from "./config.ts";
import { Checkpointer } from "./checkpoint/checkpointer.ts";
import { keysToKeep, loadShardedCheckpoint, shardCheckpointStore } from "./checkpoint/sharded-checkpoints.ts";
import { callLog } from "./rpc/call-log.ts";
import { ConnectionLimits, limitedListenerOptions, SESSION_MEMORY_MB } from "./rpc/connection-limits.ts";
import { createFastPull } from "./wire/fast-pull.ts";
import { createFastPush } from "./wire/fast-push-handler.ts";
import { handFramedHandler, isPlainGrpcCall, methodPath } from "./wire/hand-framed-call.ts";
import { createService } from "./rpc/service.ts";
import { shardIdentity } from "./run/shards.ts";
import { openBlobStore } from "./storage/open-blob-store.ts";
import { TrainingRun } from "./run/training-run.ts";
import { conformGrpcResponse, isGrpc, unknownMethod } from "./rpc/grpc-conventions.ts";
import { createHealthService } from "./rpc/health.ts";
import { createReflection, reflectionServices } from "./rpc/reflection.ts";

export interface RunningServer {
  readonly run: TrainingRun;
  readonly port: number;
  /** Present when CHECKPOINT_URI is set. */
  readonly checkpointer: Checkpointer | undefined;
  /** The connections and streams clients hold now, under the bounds of connection-limits.ts. */
  readonly limits: ConnectionLimits;
  /**
   * Stops accepting calls, ends pending waits and closes connections. Does not checkpoint: the
   * caller decides (see main.ts), after the last update can no longer change.
   */
  close(): Promise<void>;
}

/** What a caller may add: interceptors run after the server's own (authentication) on every RPC. */
export interface ServerExtras {
  interceptors?: Interceptor[];
  /** The run's clock in milliseconds (leases, waits); injectable for tests. */
  now?: () => number;
}

export async function startServer(config: ServerEnv, log: Logger, extra: ServerExtras = {}): Promise<RunningServer> {
  const run = new TrainingRun(runOptionsFrom(config), log, extra.now);
  let checkpointer: Checkpointer | undefined;
  if (config.CHECKPOINT_URI !== undefined) {
    const root = openBlobStore(config.CHECKPOINT_URI, { s3Endpoint: config.S3_ENDPOINT });
    // Sharded servers share the URI, each writing its own files; any shard count's checkpoints resume.
    const shard = shardIdentity(run.options.shard);
    const latest = await loadShardedCheckpoint(root, shard, log);
    if (latest !== undefined) run.restore(latest);
    else log.info(`no checkpoint in ${root.description}: starting a new run`);
    const store = shardCheckpointStore(root, shard);
    const protect = shard.count > 1 ? () => keysToKeep(root, shard) : undefined;
    const cp = new Checkpointer(run, store, { everySteps: config.CHECKPOINT_EVERY_STEPS, everySeconds: config.CHECKPOINT_EVERY_SECONDS, keep: config.CHECKPOINT_KEEP, protect }, log);
    run.on("applied", (version) => cp.onApplied(version));
    // A restart must know who finished: their workers are gone and will not finish again.
    run.on("finished", (slot) => void cp.save(`slot ${slot} finished`).catch(() => {}));
    // Nor forget a worker count set by hand (SetWorkerCount): nothing else would set it again.
    run.on("resized", (count) => void cp.save(`worker count ${count}`).catch(() => {}));
    checkpointer = cp;
  }
  const shutdown = new AbortController();
  let advertised = `${config.SERVER_HOST === "0.0.0.0" ? "localhost" : config.SERVER_HOST}:${config.SERVER_PORT}`;
  const reflection = createReflection([ParameterServerService, Health] as GenService<never>[]);
  // One list for the router and the hand-framed bulk calls: every RPC goes through them.
  const interceptors: Interceptor[] = [
    ...(config.LOG_LEVEL === "debug" ? [callLog(log)] : []),
    ...(config.AUTH_TOKEN === undefined ? [] : [requireBearerToken(config.AUTH_TOKEN)]),
    ...(extra.interceptors ?? []),
  ];
  // A message is at most one chunk plus its framing; anything larger is refused before decoding.
  const maxMessageBytes = config.MAX_CHUNK_BYTES + (64 << 10);
  const handler = connectNodeAdapter({
    routes: (router) =>
      router
        .service(ParameterServerService, createService(run, advertisedAddress()))
        .service(Health, createHealthService(shutdown.signal))
        .service(reflectionServices.v1, reflection.v1)
        .service(reflectionServices.v1alpha, reflection.v1alpha),
    // Only HTTP/2 reaches the adapter (the listener is http2-only).
    fallback: (req, res) => unknownMethod(req as http2.Http2ServerRequest, res as http2.Http2ServerResponse),
    acceptCompression: [],
    readMaxBytes: maxMessageBytes,
    writeMaxBytes: maxMessageBytes,
    shutdownSignal: shutdown.signal,
    interceptors,
  });
  function advertisedAddress(): string {
    return advertised;
  }

  // The bulk tensor streams, over plain gRPC, have their bodies read and written by hand.
  const handFramed = { interceptors, shutdownSignal: shutdown.signal, readMaxBytes: maxMessageBytes, writeMaxBytes: maxMessageBytes };
  const pull = createFastPull(run);
  const push = createFastPush(run, maxMessageBytes);
  const bulk = new Map([
    [methodPath(pull.method), handFramedHandler(pull, handFramed)],
    [methodPath(push.method), handFramedHandler(push, handFramed)],
  ]);
  const route = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    if (isGrpc(req)) conformGrpcResponse(res);
    const bulkHandler = bulk.get(req.url);
    if (bulkHandler !== undefined && isPlainGrpcCall(req)) void bulkHandler(req, res);
    else handler(req, res);
  };
  const limited = limitedListenerOptions(config);
  const settings = listenerSettings(config.MAX_STREAMS_PER_CONNECTION);
  const server =
    config.TLS_CERT_FILE !== undefined && config.TLS_KEY_FILE !== undefined
      ? http2.createSecureServer(
          { settings, maxSessionMemory: SESSION_MEMORY_MB, handshakeTimeout: limited.handshakeTimeout, cert: readFileSync(config.TLS_CERT_FILE), key: readFileSync(config.TLS_KEY_FILE) },
          route,
        )
      : http2.createServer({ settings, maxSessionMemory: SESSION_MEMORY_MB }, route);
  // What a client can hold (connections, streams, streams and connections that make no progress)
  // is bounded there, for every handler. A connection idles out only with no stream open: a push
  // waiting at the barrier keeps it, where the socket timeout this replaced cut it after 60 s.
  const limits = new ConnectionLimits(server, config, log);
  const sessions = new Set<http2.ServerHttp2Session>();
  if (config.AUTH_TOKEN === undefined) log.warn("AUTH_TOKEN is not set: anyone who can reach the port can join the run");
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    widenConnectionWindow(session);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.SERVER_PORT, config.SERVER_HOST, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  advertised = advertised.replace(/:\d+$/, `:${port}`);

  // Leases are also checked on every call, but a dead worker makes no calls: sweep on a timer so
  // the barrier learns of it within a fraction of the lease.
  const sweeper = setInterval(() => run.sweep(), Math.min(1000, Math.max(25, config.LEASE_MS / 4)));
  sweeper.unref();

  return {
    run,
    port,
    checkpointer,
    limits,
    close: async () => {
      clearInterval(sweeper);
      shutdown.abort();
      run.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sessions) s.close();
      // Sessions with calls still in flight get a moment to finish, then go.
      const force = setTimeout(() => {
        for (const s of sessions) s.destroy();
      }, 2000);
      await closed;
      clearTimeout(force);
    },
  };
}
