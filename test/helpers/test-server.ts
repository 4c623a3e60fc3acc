/**
 * A real parameter server on an ephemeral loopback port, and real gRPC clients for it, for the
 * integration tests.
 */
import type { Test } from "tap";
import { parseEnv } from "@distributed-ps/common/env.ts";
import { createLogger } from "@distributed-ps/common/log.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { serverEnvSchema, type ServerEnv } from "../../server/src/config.ts";
import { startServer, type RunningServer, type ServerExtras } from "../../server/src/server.ts";
import { connectToServer } from "@distributed-ps/common/wire/client.ts";
import { WorkerConnection } from "../../worker/src/connection/worker-connection.ts";
import type { SyncBarrier } from "../../server/src/aggregation/sync-barrier.ts";
import { waitUntil } from "./wait.ts";

export interface TestServer {
  server: RunningServer;
  /** The configuration it was started with. */
  config: ServerEnv;
  address: string;
  /** Log lines the server wrote. */
  logs: string[];
  register(label?: string, preferredSlot?: number): Promise<WorkerConnection>;
}

export async function startTestServer(t: Test, env: Record<string, string> = {}, extras: ServerExtras = {}): Promise<TestServer> {
  const config = parseEnv(serverEnvSchema, { SERVER_HOST: "127.0.0.1", SERVER_PORT: "0", STATUS_INTERVAL_MS: "0", START_TIMEOUT_MS: "0", ...env });
  const logs: string[] = [];
  const server = await startServer(config, createLogger("server", "debug", (line) => logs.push(line)), extras);
  // The checkpointer too: a checkpoint written as a worker finished may still be on its way to disk.
  t.teardown(async () => {
    await server.close();
    await server.checkpointer?.close();
  });
  const address = `127.0.0.1:${server.port}`;
  const client = connectToServer(address);
  return {
    server,
    config,
    address,
    logs,
    register: (label = "test", preferredSlot = -1) =>
      WorkerConnection.register(client, { preferredSlot, jobFingerprint: "test-job", workerLabel: label }, 10_000),
  };
}

/** A fixed two-tensor model: w [2,2] and b [2]. */
export function initialParameters(): NamedTensor[] {
  return [
    { name: "w", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
    { name: "b", shape: [2], data: new Float32Array([0.5, -0.5]) },
  ];
}

/** A gradient shaped like initialParameters() with every element `v`. */
export function gradient(v: number): NamedTensor[] {
  return [
    { name: "w", shape: [2, 2], data: new Float32Array(4).fill(v) },
    { name: "b", shape: [2], data: new Float32Array(2).fill(v) },
  ];
}

/** Registers `n` workers and initialises the parameters through the first. */
export async function workersWithParameters(ts: TestServer, n: number): Promise<WorkerConnection[]> {
  const workers: WorkerConnection[] = [];
  for (let i = 0; i < n; i++) workers.push(await ts.register(`w${i}`));
  const first = await workers[0]!.waitForParameters();
  if (!first.initialize) throw new Error("first worker was not asked to initialise");
  await workers[0]!.initParameters(initialParameters());
  return workers;
}

/**
 * Resolves once the open sync step holds slot `slot`'s gradient: for tests that send the next
 * gradient only after this one has arrived (arrival order), instead of waiting a while for it.
 */
export function atBarrier(ts: TestServer, slot: number): Promise<void> {
  const barrier = ts.server.run.aggregator as SyncBarrier;
  return waitUntil(() => barrier.pushedThisStep.has(slot), `slot ${slot}'s gradient at the sync barrier`, { pollMs: 2 });
}

/** Resolves to "pending" if `p` has not settled after `ms`. */
export async function settledWithin<T>(p: Promise<T>, ms: number): Promise<T | "pending"> {
  return Promise.race([p, new Promise<"pending">((res) => setTimeout(() => res("pending"), ms))]);
}

export function values(tensors: readonly NamedTensor[]): Record<string, number[]> {
  return Object.fromEntries(tensors.map((t) => [t.name, Array.from(t.data)]));
}
