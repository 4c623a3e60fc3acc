/**
 * One parameter-server measurement: a real server process (server/src/main.ts; or K shard
 * processes) and N byte-moving worker processes (bench/byte-worker.ts) on loopback, the server's
 * CPU and memory sampled from /proc while they run.
 */
import { mkdirSync } from "node:fs";
import { measure, type Measurement } from "./aggregate.ts";
import { modelLayout } from "./models.ts";
import { exitWithin, freePort, startNode, waitForPort, type Child } from "./processes.ts";
import { ProcessSampler } from "./procfs.ts";
import { ROUNDS_TAG, WIRE_BYTES, type RoundsRecord, type WireDtype } from "./rounds.ts";

export interface PsCaseSpec {
  model: string;
  workers: number;
  /** Server shards (separate processes); 1 = one server. */
  shards: number;
  mode: "sync" | "async" | "ssp";
  pull: WireDtype;
  push: WireDtype;
  rounds: number;
  warmup: number;
  /** Emulated compute per round (0: a pure byte-moving benchmark). */
  computeMs: number;
  /**
   * Whether a model that fits in one message comes back in the push's answer, the next round
   * skipping its pull, as the worker does (training-loop.ts); false: a pull every round.
   */
  oneTrip: boolean;
  compute: "sleep" | "busy";
  /** Extra server environment (e.g. OPTIMIZER, MAX_CHUNK_BYTES), applied last. */
  serverEnv: Record<string, string>;
  /** Directory for a V8 CPU profile of the server (and of the first worker when profileWorker). */
  profileDir?: string | undefined;
  profileWorker?: boolean;
  /** node flags of the server and worker processes (common/src/node-flags.ts unless told otherwise). */
  nodeFlags: readonly string[];
  timeoutMs: number;
}

export interface PsCaseResult extends Measurement {
  id: string;
  model: string;
  params: number;
  tensors: number;
  workers: number;
  shards: number;
  mode: string;
  pull_dtype: WireDtype;
  push_dtype: WireDtype;
  compute_ms: number;
  /** Whether rounds of a model that fits in one message skipped their pull (PsCaseSpec.oneTrip, when it applies). */
  one_trip: boolean;
  compute: string;
  rounds_per_worker: number;
  warmup: number;
  pull_bytes: number;
  push_bytes: number;
  server_env: Record<string, string>;
  node_flags: string[];
  profiled: boolean;
}

export function caseId(s: Pick<PsCaseSpec, "model" | "workers" | "shards" | "mode" | "pull" | "push" | "computeMs">): string {
  return `${s.model} ${s.mode} pull ${s.pull} push ${s.push} N=${s.workers}${s.shards > 1 ? ` K=${s.shards}` : ""}${s.computeMs > 0 ? ` compute ${s.computeMs}ms` : ""}`;
}

export async function runPsCase(spec: PsCaseSpec): Promise<PsCaseResult> {
  const layout = modelLayout(spec.model);
  const ports = await Promise.all(Array.from({ length: spec.shards }, () => freePort()));
  const addresses = ports.map((p) => `127.0.0.1:${p}`);
  if (spec.profileDir !== undefined) mkdirSync(spec.profileDir, { recursive: true });
  const prof = (name: string) => (spec.profileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${spec.profileDir}`, `--cpu-prof-name=${name}.cpuprofile`]);
  const servers = ports.map((port, k) =>
    startNode(
      spec.shards > 1 ? `server shard ${k}` : "server",
      "server/src/main.ts",
      [],
      {
        SERVER_HOST: "127.0.0.1",
        SERVER_PORT: String(port),
        TOTAL_WORKERS_EXPECTED: String(spec.workers),
        SERVER_MODE: spec.mode,
        DASHBOARD_ENABLED: "false",
        STATUS_INTERVAL_MS: "0",
        START_TIMEOUT_MS: "60000",
        EXIT_ON_COMPLETE: "true",
        LEASE_MS: "30000",
        OPTIMIZER: "sgd",
        LEARNING_RATE: "0.01",
        ...(spec.shards > 1 ? { SHARD_INDEX: String(k), SHARD_ADDRESSES: addresses.join(",") } : {}),
        ...spec.serverEnv,
      },
      [...spec.nodeFlags, ...prof(spec.shards > 1 ? `server${k}` : "server")],
    ),
  );
  const workers: Child[] = [];
  let sampler: ProcessSampler | undefined;
  try {
    await Promise.all(servers.map((server, k) => waitForPort(server, ports[k]!, 30_000)));
    sampler = new ProcessSampler(servers.map((s) => s.pid), 100);
    for (let i = 0; i < spec.workers; i++) {
      workers.push(
        startNode(
          `worker ${i}`,
          "bench/byte-worker.ts",
          [
            "--address", addresses[0]!,
            "--model", spec.model,
            "--rounds", String(spec.rounds),
            "--warmup", String(spec.warmup),
            "--pull", spec.pull,
            "--push", spec.push,
            "--compute-ms", String(spec.computeMs),
            "--compute", spec.compute,
            "--one-trip", spec.oneTrip ? "auto" : "off",
            "--label", `bench-worker-${i}`,
            "--timeout-ms", String(Math.min(spec.timeoutMs, 600_000)),
          ],
          {},
          [...spec.nodeFlags, ...(spec.profileWorker && i === 0 ? prof("worker0") : [])],
        ),
      );
    }
    const codes = await Promise.all(workers.map((w) => exitWithin(w, spec.timeoutMs)));
    const failed = workers.find((_, i) => codes[i] !== 0);
    if (failed) throw new Error(`${failed.name} failed; last lines:\n${failed.tail()}\n${servers.map((s) => `${s.name}:\n${s.tail()}`).join("\n")}`);
    sampler.sample();
    const records = workers.map((w) => w.record<RoundsRecord>(ROUNDS_TAG)!);
    const m = measure(records, sampler.samples);
    // Servers exit once every worker has finished (and write their profiles then).
    await Promise.all(servers.map((s) => exitWithin(s, 30_000)));
    return {
      id: caseId(spec),
      model: spec.model,
      params: layout.params,
      tensors: layout.tensors.length,
      workers: spec.workers,
      shards: spec.shards,
      mode: spec.mode,
      pull_dtype: spec.pull,
      push_dtype: spec.push,
      compute_ms: spec.computeMs,
      compute: spec.compute,
      one_trip: spec.oneTrip,
      rounds_per_worker: spec.rounds,
      warmup: spec.warmup,
      pull_bytes: layout.params * WIRE_BYTES[spec.pull],
      push_bytes: layout.params * WIRE_BYTES[spec.push],
      server_env: spec.serverEnv,
      node_flags: [...spec.nodeFlags],
      profiled: spec.profileDir !== undefined,
      ...m,
    };
  } finally {
    sampler?.stop();
    for (const w of workers) w.kill();
    for (const s of servers) s.kill();
  }
}
