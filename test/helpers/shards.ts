/**
 * Sharded servers in one test process: K real servers on loopback ports (each told its SHARD_INDEX
 * and every shard's address), workers connected to all of them through the worker's own
 * connectToShards, and a small deterministic model and gradient sequence to train with.
 */
import type { Test } from "tap";
import { parseEnv } from "@distributed-ps/common/env.ts";
import { createLogger } from "@distributed-ps/common/log.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { serverEnvSchema } from "../../server/src/config.ts";
import { startServer, type RunningServer } from "../../server/src/server.ts";
import { connectToServer } from "@distributed-ps/common/wire/client.ts";
import { WorkerConnection, type ParameterConnection } from "../../worker/src/connection/worker-connection.ts";
import { connectToShards } from "../../worker/src/connection/sharded-connection.ts";
import { freePort } from "./processes.ts";

export interface Shards {
  servers: RunningServer[];
  addresses: string[];
  logs: string[][];
  /** Closes every shard (also done at teardown); the caller may then save checkpoints no more. */
  close(): Promise<void>;
}

/**
 * Starts `count` shards (count 1: an ordinary unsharded server); `perShard` adds settings to one shard.
 * Each shard must know every shard's address before it starts, so the ports are picked first; another
 * test process can take one in between (EADDRINUSE). Then the shards already started are closed and
 * all of them start again on new ports: left running, they would keep this test process alive.
 */
export async function startShards(t: Test, count: number, env: Record<string, string> = {}, perShard: Record<number, Record<string, string>> = {}): Promise<Shards> {
  for (let attempt = 1; ; attempt++) {
    const ports: number[] = [];
    while (ports.length < count) ports.push(await freePort());
    const addresses = ports.map((p) => `127.0.0.1:${p}`);
    const servers: RunningServer[] = [];
    const logs: string[][] = [];
    try {
      for (let k = 0; k < count; k++) {
        const config = parseEnv(serverEnvSchema, {
          SERVER_HOST: "127.0.0.1",
          SERVER_PORT: String(ports[k]),
          STATUS_INTERVAL_MS: "0",
          START_TIMEOUT_MS: "0",
          DASHBOARD_ENABLED: "false",
          ...(count > 1 ? { SHARD_INDEX: String(k), SHARD_ADDRESSES: addresses.join(",") } : {}),
          ...env,
          ...perShard[k],
        });
        const lines: string[] = [];
        logs.push(lines);
        servers.push(await startServer(config, createLogger(`shard ${k}`, "debug", (line) => lines.push(line))));
      }
    } catch (err) {
      await Promise.all(servers.map((s) => s.close()));
      if ((err as NodeJS.ErrnoException).code === "EADDRINUSE" && attempt < 5) continue;
      throw err;
    }
    let closed: Promise<void> | undefined;
    const close = () => (closed ??= Promise.all(servers.map((s) => s.close())).then(() => {}));
    t.teardown(close);
    return { servers, addresses, logs, close };
  }
}

const quiet = createLogger("test", "error", () => {});

/** Registers a worker with the shards the way the worker program does (shard 0 first). */
export async function connectWorker(addresses: readonly string[], o: { label?: string; preferredSlot?: number; previous?: ParameterConnection } = {}): Promise<ParameterConnection> {
  const request = { preferredSlot: o.preferredSlot ?? -1, jobFingerprint: "shard-test", workerLabel: o.label ?? "test" };
  return connectToShards({
    request,
    registerFirst: () => WorkerConnection.register(connectToServer(addresses[0]!), request, 10_000),
    clientFor: (address) => connectToServer(address),
    callTimeoutMs: 10_000,
    retry: () => ({ budgetMs: 3_000, baseDelayMs: 50 }),
    previous: o.previous,
    log: quiet,
  });
}

/** Waits for parameters, initialising them with `model` when chosen (as worker/src/main.ts does). */
export async function ensureParameters(conn: ParameterConnection, model: readonly NamedTensor[]): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await conn.waitForParameters();
    if (r.ready) return;
    if (r.initialize) await conn.initParameters(model);
  }
  throw new Error("parameters never became ready");
}

/** Five tensors of different sizes (K = 2 puts the largest alone on shard 0) with fixed values. */
export function shardTestModel(): NamedTensor[] {
  const specs: [string, number[]][] = [
    ["a/kernel", [16, 8]],
    ["a/bias", [8]],
    ["b/kernel", [8, 4]],
    ["b/bias", [4]],
    ["c", [64]],
  ];
  return specs.map(([name, shape], t) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return { name, shape, data: Float32Array.from({ length: n }, (_, i) => Math.sin(1 + i * 0.7 + t)) };
  });
}

/** The gradient of step `step` for worker `worker`: fixed values with every bit in play. */
export function shardTestGradient(step: number, worker = 0): NamedTensor[] {
  return shardTestModel().map((p, t) => ({
    name: p.name,
    shape: p.shape,
    data: Float32Array.from(p.data, (_, i) => Math.cos(i * 0.37 + step * 1.3 + worker * 0.11 + t) * 0.5),
  }));
}

/** One worker alone (sync): pull, push the step's gradient, for each step; data position = step + 1. */
export async function trainSteps(conn: ParameterConnection, steps: readonly number[]): Promise<void> {
  for (const step of steps) {
    const pulled = await conn.pull();
    await conn.push(shardTestGradient(step), pulled.version, { exampleCount: 1, position: { epoch: 0, batch: step + 1 }, bases: pulled.bases });
  }
}

/** The parameters as name -> bytes, for bit-for-bit comparison. */
export async function parameterBytes(conn: ParameterConnection): Promise<Record<string, string>> {
  const pulled = await conn.pull();
  return Object.fromEntries(
    [...pulled.tensors].sort((a, b) => (a.name < b.name ? -1 : 1)).map((t) => [t.name, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString("hex")]),
  );
}
