/**
 * A worker's connection to sharded servers: K server processes, each holding part of the tensors
 * (common/src/shard-partition.ts), presented to the training loop as one ParameterConnection.
 *
 * - Registration: shard 0 first (it hands out the slot and the data position to resume from, and
 *   lists the shards), then every other shard, asking for exactly that slot.
 * - Initialisation: the worker shard 0 chooses claims initialisation on every other shard and
 *   uploads each shard its part, shard 0's last; other workers talk to the other shards only once
 *   shard 0 is ready, so no other worker can claim them first.
 * - Pulls and pushes go to all shards concurrently. A pull's tensors are merged, and every shard's
 *   version travels along (PulledParameters.bases) so that each push sends each shard its own base
 *   version. Each shard has its own barrier: in sync mode a shard's step completes once every live
 *   worker has pushed that shard's part.
 * - A push refused by some shards but accepted by others (a sync straggler, an async gradient too
 *   stale for one shard) is retried by the training loop; the retry of the same batch goes only to
 *   the shards that refused, so every shard counts each batch once.
 * - Metrics and NextAssignment (who trains which data) go to shard 0, the coordinator; Finish goes
 *   to every other shard first and to shard 0 last, so once shard 0 sees the run complete, every
 *   shard has seen every worker finish.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import {
  Dtype,
  type DataPosition,
  type PushGradientsResponse,
  type RunConfig,
  type ModelExtrasSchema,
  type WorkerMetricsSchema,
} from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import type { Logger } from "@distributed-ps/common/log.ts";
import type { NamedTensor, SparseTensor } from "@distributed-ps/common/named-tensor.ts";
import { partitionTensors, shardOfTensor, splitByShard } from "@distributed-ps/common/shard-partition.ts";
import type { ParameterServerClient } from "@distributed-ps/common/wire/client.ts";
import { WorkerConnection, type Assignment, type MinVersion, type ParameterConnection, type PulledParameters, type PushOptions } from "./worker-connection.ts";
import { classifyFailure, withRetry, type RetryOptions } from "./retry.ts";

/** Push refusals the training loop answers by recomputing the batch. */
const isRefusal = (e: ConnectError) => classifyFailure(e) === "refused";

export class ShardedConnection implements ParameterConnection {
  /** One session per shard, in shard order; all hold the same slot. */
  readonly shards: readonly WorkerConnection[];
  readonly resumeFrom: DataPosition | undefined;
  /** Which shard holds which tensor, as the latest pull found it. */
  #owner: Map<string, number> | undefined;
  /** The batch whose push some shards have accepted and others refused, and their answers. */
  #partial: { batch: string; accepted: Map<number, PushGradientsResponse> } | undefined;

  constructor(shards: readonly WorkerConnection[], resumeFrom: DataPosition | undefined) {
    if (shards.length < 2) throw new Error("a sharded connection needs at least two shards");
    this.shards = shards;
    this.resumeFrom = resumeFrom;
  }

  get slot(): number {
    return this.shards[0]!.slot;
  }

  /** Shard 0's configuration (every shard's agrees on what the worker uses; see connectToShards). */
  get config(): RunConfig {
    return this.shards[0]!.config;
  }

  async heartbeat(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.heartbeat()));
  }

  /**
   * Ready once every shard is; `initialize` when shard 0 chose this worker. The other shards are
   * asked only after shard 0 is ready, by which time its initialiser has initialised them.
   */
  async waitForParameters(): Promise<{ ready: boolean; initialize: boolean }> {
    const first = await this.shards[0]!.waitForParameters();
    if (!first.ready) return first;
    const rest = await Promise.all(this.shards.slice(1).map((s) => s.waitForParameters()));
    const empty = rest.findIndex((r) => r.initialize);
    if (empty >= 0) {
      throw new Error(
        `shard ${empty + 1} has no parameters while shard 0 has: the shards did not start from the same checkpoint; ` +
          "restart every shard with the same CHECKPOINT_URI",
      );
    }
    return { ready: rest.every((r) => r.ready), initialize: false };
  }

  /** Uploads each shard its part of `tensors`, after claiming initialisation on the others. */
  async initParameters(tensors: readonly NamedTensor[]): Promise<void> {
    const k = this.shards.length;
    const parts = partitionTensors(tensors, k);
    if (parts.some((p) => p.names.length === 0)) {
      throw new Error(`the model has ${tensors.length} tensors, fewer than the ${k} server shards: use at most ${tensors.length} shards`);
    }
    const split = splitByShard(tensors, shardOfTensor(tensors, k), k);
    await Promise.all(
      this.shards.slice(1).map(async (shard, i) => {
        const r = await shard.waitForParameters();
        if (!r.initialize) {
          throw new Error(`shard ${i + 1} did not let this worker initialise it (it already has parameters, or another worker claimed it) although shard 0 did`);
        }
        await shard.initParameters(split[i + 1]!);
      }),
    );
    await this.shards[0]!.initParameters(split[0]!);
  }

  /**
   * Every shard's parameters, pulled concurrently and merged. `version` is shard 0's; `bases` has
   * every shard's. `minVersion` may give one version per shard.
   */
  async pull(minVersion: MinVersion = 0, dtype: Dtype = Dtype.FLOAT32): Promise<PulledParameters> {
    const mins = this.shards.map((_, k) => (typeof minVersion === "number" ? minVersion : (minVersion[k] ?? 0)));
    const pulled = await Promise.all(this.shards.map((s, k) => s.pull(mins[k], dtype)));
    const owner = new Map<string, number>();
    const tensors: NamedTensor[] = [];
    pulled.forEach((p, k) => {
      for (const t of p.tensors) {
        if (owner.has(t.name)) throw new Error(`tensor "${t.name}" is held by shard ${owner.get(t.name)} and shard ${k}`);
        owner.set(t.name, k);
        tensors.push(t);
      }
    });
    this.#owner = owner;
    return { version: pulled[0]!.version, tensors, bases: pulled.map((p) => p.version) };
  }

  /**
   * Pushes each shard its part of the gradient, concurrently, against its own base version
   * (`o.bases`; without them every shard gets `baseVersion`). Resolves with shard 0's answer.
   * Throws if any shard failed; a retry for the same data position skips the shards that accepted.
   */
  /** Never any: each shard holds only its part (the shards are not asked for them), so the worker pulls. */
  parametersIn(): PulledParameters | undefined {
    return undefined;
  }

  async push(gradients: readonly (NamedTensor | SparseTensor)[], baseVersion: number, o: PushOptions): Promise<PushGradientsResponse> {
    const k = this.shards.length;
    const batch = o.position === undefined ? undefined : `${o.position.epoch}:${o.position.part ?? 0}:${o.position.batch}`;
    if (batch === undefined || this.#partial?.batch !== batch) this.#partial = undefined;
    const accepted = this.#partial?.accepted ?? new Map<number, PushGradientsResponse>();
    const parts = splitByShard(gradients, this.#owner ?? shardOfTensor(gradients, k), k);
    const results = await Promise.allSettled(
      this.shards.map(async (shard, i) => {
        if (accepted.has(i)) return;
        const r = await shard.push(parts[i]!, o.bases?.[i] ?? baseVersion, { ...o, bases: undefined, returnParameters: false });
        accepted.set(i, r);
      }),
    );
    const errors = results.flatMap((r) => (r.status === "rejected" ? [ConnectError.from(r.reason)] : []));
    if (errors.length === 0) {
      this.#partial = undefined;
      return accepted.get(0)!;
    }
    if (batch !== undefined && accepted.size > 0) this.#partial = { batch, accepted };
    // Trouble with a shard (lost session, unreachable) outranks a refusal: the caller must rejoin.
    throw errors.find((e) => !isRefusal(e)) ?? errors[0]!;
  }

  async reportMetrics(metrics: MessageInitShape<typeof WorkerMetricsSchema>): Promise<void> {
    await this.shards[0]!.reportMetrics(metrics);
  }

  /** Leaves every shard (each one's barrier stops waiting for this worker). */
  async leave(): Promise<void> {
    await Promise.allSettled(this.shards.map((s) => s.leave()));
  }

  /** Shard 0 divides the data. */
  nextAssignment(epochs: number): Promise<Assignment> {
    return this.shards[0]!.nextAssignment(epochs);
  }

  /** Finishes every other shard, then shard 0 (the only one given `extras`: one shard exports
   *  the model's state); returns whether shard 0 saw the run complete. */
  async finish(finalMetrics: MessageInitShape<typeof WorkerMetricsSchema>, extras?: MessageInitShape<typeof ModelExtrasSchema>): Promise<boolean> {
    await Promise.all(this.shards.slice(1).map((s) => s.finish(finalMetrics)));
    return this.shards[0]!.finish(finalMetrics, extras);
  }

  /** Each shard's session if the shard still accepts it (a heartbeat succeeds), else undefined. */
  async liveSessions(): Promise<(WorkerConnection | undefined)[]> {
    return Promise.all(this.shards.map((s) => s.heartbeat().then(() => s, () => undefined)));
  }
}

export interface ConnectToShardsOptions {
  /** What the worker registers with (preferredSlot applies to shard 0). */
  request: { preferredSlot: number; jobFingerprint: string; workerLabel: string };
  /** Registers with shard 0, the address the worker was given (retrying as the caller sees fit). */
  registerFirst: () => Promise<WorkerConnection>;
  /** A client for another shard's address, as RunConfig.shards lists it. */
  clientFor: (address: string) => ParameterServerClient;
  callTimeoutMs: number;
  /** Retry policy for registering with another shard at `address` (shards may start later than shard 0). */
  retry: (address: string) => RetryOptions;
  /** The connection whose session was lost: sessions that still work are kept (registering again would find our own slot taken). */
  previous?: ParameterConnection | undefined;
  log: Logger;
}

/**
 * Registers with the run's server(s): a WorkerConnection when the run has one shard, else a
 * ShardedConnection holding the same slot on every shard.
 */
export async function connectToShards(o: ConnectToShardsOptions): Promise<ParameterConnection> {
  const kept = o.previous instanceof ShardedConnection ? await o.previous.liveSessions() : [];
  const reusedFirst = kept[0];
  const first = reusedFirst ?? (await o.registerFirst());
  const shards = first.config.shards;
  if (shards.length <= 1) return first;
  shards.forEach((s, i) => {
    if (s.index !== i) throw new Error(`shard 0 lists its shards out of order: ${shards.map((x) => `${x.index}=${x.address}`).join(", ")}`);
  });

  // Register with the others while keeping the sessions already held alive.
  const held = new Set<WorkerConnection>([first, ...kept.filter((c) => c !== undefined)]);
  const keepAlive = setInterval(() => {
    for (const s of held) s.heartbeat().catch(() => {});
  }, first.config.heartbeatIntervalMs);
  try {
    const rest = await Promise.all(
      shards.slice(1).map(async ({ index, address }) => {
        const reuse = kept[index];
        if (reuse !== undefined && reuse.slot === first.slot) return reuse;
        const client = o.clientFor(address);
        const conn = await withRetry(
          `registering with shard ${index} at ${address}`,
          () => WorkerConnection.register(client, { ...o.request, preferredSlot: first.slot, requirePreferredSlot: true }, o.callTimeoutMs),
          o.retry(address),
        );
        held.add(conn);
        return conn;
      }),
    );
    const all = [first, ...rest];
    all.forEach((c, k) => {
      const mismatch = c.config.shards.length !== shards.length || c.config.mode !== first.config.mode || c.config.totalWorkers !== first.config.totalWorkers;
      if (mismatch) {
        throw new Error(
          `shard ${k} disagrees with shard 0 about the run (${c.config.shards.length} shards, mode ${c.config.mode}, ${c.config.totalWorkers} workers ` +
            `vs ${shards.length}, ${first.config.mode}, ${first.config.totalWorkers}): give every shard the same settings`,
        );
      }
    });
    // A kept shard-0 session did not register again, so ask shard 0 where the slot is in its data.
    const resumeFrom = reusedFirst === undefined ? first.resumeFrom : (await first.client.getStatus({}, { timeoutMs: o.callTimeoutMs })).slots[first.slot]?.position;
    o.log.info(`holding slot ${first.slot} on all ${shards.length} server shards (${shards.map((s) => s.address).join(", ")})`);
    return new ShardedConnection(all, resumeFrom);
  } finally {
    clearInterval(keepAlive);
  }
}
