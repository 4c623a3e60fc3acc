/**
 * A byte-moving worker: the real worker protocol (register, wait for or initialise the parameters,
 * pull, push, finish) without a model, against one server or K shards (as the real worker connects). Each round pulls every parameter in the pull dtype, optionally
 * spends an emulated compute time, and pushes a gradient of the same shapes in the push dtype. It
 * prints one BENCH_ROUNDS line with the timings of its measured rounds.
 *
 *   node bench/byte-worker.ts --address 127.0.0.1:8000 --model 11.2M --rounds 20 --pull fp32 --push fp16
 */
import { parseArgs } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { Dtype, Mode } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { elementCount, type NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { createLogger } from "@distributed-ps/common/log.ts";
import { connectToServer } from "@distributed-ps/common/wire/client.ts";
import { nextVersions, WorkerConnection, type MinVersion, type PulledParameters } from "../worker/src/connection/worker-connection.ts";
import { connectToShards } from "../worker/src/connection/sharded-connection.ts";
import { modelLayout } from "./lib/models.ts";
import { emulateCompute, epochMs, isWireDtype, printRecord, WIRE_BYTES, type WireDtype } from "./lib/rounds.ts";

const DTYPES: Record<WireDtype, Dtype> = { fp32: Dtype.FLOAT32, fp16: Dtype.FLOAT16, bf16: Dtype.BFLOAT16 };

const { values: a } = parseArgs({
  options: {
    address: { type: "string", default: "127.0.0.1:8000" },
    model: { type: "string", default: "11.2M" },
    rounds: { type: "string", default: "20" },
    warmup: { type: "string", default: "2" },
    pull: { type: "string", default: "fp32" },
    push: { type: "string", default: "fp16" },
    "compute-ms": { type: "string", default: "0" },
    compute: { type: "string", default: "sleep" },
    "one-trip": { type: "string", default: "auto" },
    label: { type: "string", default: `byte-worker-${process.pid}` },
    "timeout-ms": { type: "string", default: "120000" },
  },
});
const rounds = Number(a.rounds);
const warmup = Number(a.warmup);
const computeMs = Number(a["compute-ms"]);
if (!isWireDtype(a.pull) || !isWireDtype(a.push)) throw new Error(`--pull/--push accept fp32, fp16, bf16 (got ${a.pull}, ${a.push})`);
if (a.compute !== "sleep" && a.compute !== "busy") throw new Error(`--compute accepts sleep or busy (got ${a.compute})`);
const pullDtype = DTYPES[a.pull];
const pushDtype = DTYPES[a.push];
const computeHow = a.compute;
const layout = modelLayout(a.model);

/**
 * Deterministic values in ±scale (xorshift32, so no run depends on Math.random): one random block
 * tiled over every tensor, which keeps start-up (and a worker's CPU profile) free of a per-element
 * generator loop.
 */
function fill(tensors: { name: string; shape: number[] }[], seed: number, scale: number): NamedTensor[] {
  const block = new Float32Array(65_521); // prime: tiles do not line up with tensor shapes
  let s = seed >>> 0 || 1;
  for (let i = 0; i < block.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    block[i] = ((s >>> 0) / 4294967296 - 0.5) * 2 * scale;
  }
  let offset = 0;
  return tensors.map((t) => {
    const data = new Float32Array(elementCount(t.shape));
    for (let i = 0; i < data.length; ) {
      const from = (offset + i) % block.length;
      const n = Math.min(data.length - i, block.length - from);
      data.set(block.subarray(from, from + n), i);
      i += n;
    }
    offset += data.length;
    return { name: t.name, shape: t.shape, data };
  });
}

const callTimeoutMs = Number(a["timeout-ms"]);
const request = { preferredSlot: -1, jobFingerprint: `bench:${layout.name}`, workerLabel: a.label! };

async function registerFirst(): Promise<WorkerConnection> {
  const client = connectToServer(a.address!);
  for (let attempt = 1; ; attempt++) {
    try {
      return await WorkerConnection.register(client, request, callTimeoutMs);
    } catch (err) {
      if (ConnectError.from(err).code !== Code.Unavailable || attempt >= 20) throw err;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
}

// One server or K shards, as the run's shard 0 lists them.
const conn = await connectToShards({
  request,
  registerFirst,
  clientFor: (address) => connectToServer(address),
  callTimeoutMs,
  retry: () => ({ budgetMs: 30_000 }),
  log: createLogger(a.label!, "warn"),
});
const heartbeat = setInterval(() => void conn.heartbeat().catch(() => {}), conn.config.heartbeatIntervalMs);
heartbeat.unref();
for (;;) {
  const r = await conn.waitForParameters();
  if (r.ready) break;
  if (r.initialize) await conn.initParameters(fill(layout.tensors, 1, 0.05));
}

// One gradient set for every round: the benchmark moves bytes, it does not learn.
const gradient = fill(layout.tensors, 2 + conn.slot, 1e-3);
const sync = conn.config.mode === Mode.SYNC;
const pullMs: number[] = [];
const pushMs: number[] = [];
let retries = 0;
let startMs = 0;
let cpuAtStart = process.cpuUsage();
let minVersion: MinVersion = 0;
// As the worker does (training-loop.ts): a model that fits in one message, pulled as float32, comes
// back in the push's answer, and the next round skips its pull.
const oneTrip = a["one-trip"] !== "off" && pullDtype === Dtype.FLOAT32 && layout.params * 4 <= conn.config.maxChunkBytes;
let prefetched: PulledParameters | undefined;

for (let round = 0; round < warmup + rounds; round++) {
  if (round === warmup) {
    startMs = epochMs();
    cpuAtStart = process.cpuUsage();
  }
  let pullTime = 0;
  let pushTime = 0;
  for (let attempt = 0; ; attempt++) {
    let t = performance.now();
    const pulled: PulledParameters = prefetched ?? (await conn.pull(minVersion, pullDtype));
    prefetched = undefined;
    pullTime += performance.now() - t;
    if (pulled.tensors.length !== layout.tensors.length) {
      throw new Error(`pull returned ${pulled.tensors.length} tensors, expected ${layout.tensors.length}`);
    }
    await emulateCompute(computeMs, computeHow);
    t = performance.now();
    try {
      // The position names the batch, so a sharded retry goes only to the shards that refused it.
      const answer = await conn.push(gradient, pulled.version, { exampleCount: 1, dtype: pushDtype, bases: pulled.bases, position: { epoch: 0, batch: round }, returnParameters: oneTrip });
      if (oneTrip) prefetched = conn.parametersIn(answer);
      pushTime += performance.now() - t;
      minVersion = 0;
      break;
    } catch (raw) {
      pushTime += performance.now() - t;
      const err = ConnectError.from(raw);
      if ((err.code !== Code.Aborted && err.code !== Code.AlreadyExists) || attempt >= 20) throw err;
      retries++;
      minVersion = sync ? nextVersions(pulled) : 0;
    }
  }
  if (round >= warmup) {
    pullMs.push(pullTime);
    pushMs.push(pushTime);
  }
}
const endMs = epochMs();
const cpu = process.cpuUsage(cpuAtStart);
clearInterval(heartbeat);
await conn.finish({});
printRecord({
  label: a.label!,
  rounds,
  warmup,
  pull_ms: pullMs,
  push_ms: pushMs,
  pull_bytes: layout.params * WIRE_BYTES[a.pull],
  push_bytes: layout.params * WIRE_BYTES[a.push],
  start_ms: startMs,
  end_ms: endMs,
  cpu_s: (cpu.user + cpu.system) / 1e6,
  retries,
  max_rss_bytes: process.resourceUsage().maxRSS * 1024,
});
