/**
 * The worker's side of the protocol: one object per registration that knows its session and turns
 * the streaming RPCs into plain calls on NamedTensors. It holds no training logic, so tests and
 * benchmarks use it as well.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  Dtype,
  PushGradientsRequestSchema,
  InitParametersRequestSchema,
  type RegisterResponse,
  type RunConfig,
  type ModelExtrasSchema,
  type WorkerMetricsSchema,
  type WorkerSession,
  type PushGradientsResponse,
  type DataPosition,
} from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import type { ParameterServerClient } from "@distributed-ps/common/wire/client.ts";
import { isSparse, type NamedTensor, type SparseTensor } from "@distributed-ps/common/named-tensor.ts";
import { chunkTensors, DEFAULT_CHUNK_BYTES } from "@distributed-ps/common/tensor-stream/chunk-tensors.ts";
import { TensorCollector } from "@distributed-ps/common/tensor-stream/tensor-collector.ts";
import { ChunkFramings } from "@distributed-ps/common/wire/grpc-framing.ts";
import { fastChannelFor } from "../wire/fast-channel.ts";
import { fastPull } from "../wire/fast-pull.ts";
import { fastPush } from "../wire/fast-push.ts";
import { WireArena } from "../wire/wire-arena.ts";

export interface PulledParameters {
  /** Version of the pull (with sharded servers: shard 0's). */
  version: number;
  tensors: NamedTensor[];
  /** Sharded servers: every shard's version, in shard order; push sends each its own as the base. */
  bases?: readonly number[];
}

/** Versions a pull waits for: one for all, or (sharded servers) one per shard. */
export type MinVersion = number | readonly number[];

/** The versions that follow `pulled`: what a sync worker waits for after its step was applied without it. */
export function nextVersions(pulled: PulledParameters): MinVersion {
  return pulled.bases?.map((v) => v + 1) ?? pulled.version + 1;
}

export interface PushOptions {
  exampleCount: number;
  /** Where the worker is in its data once this gradient counts: part and batches as NextAssignment gave them. */
  position?: { epoch: number; batch: number; part?: number; batches?: number };
  dtype?: Dtype;
  /** Sharded servers: each shard's base version (PulledParameters.bases); baseVersion is then shard 0's. */
  bases?: readonly number[] | undefined;
  /** Asks for the parameters in the answer (PushHeader.return_parameters), to save the next pull. */
  returnParameters?: boolean;
}

/** NextAssignment's answer: a part of an epoch's data to train, nothing left, stop, or ask again. */
export type Assignment =
  | { kind: "train"; epoch: number; part: number; parts: number; firstBatch: number; plannedSlot: number }
  | { kind: "done" }
  | { kind: "retire" }
  | { kind: "wait" };

/**
 * What the training loop needs of its server: WorkerConnection for one server, ShardedConnection
 * (sharded-connection.ts) for several shards.
 */
export interface ParameterConnection {
  readonly slot: number;
  readonly config: RunConfig;
  readonly resumeFrom: DataPosition | undefined;
  heartbeat(): Promise<void>;
  waitForParameters(): Promise<{ ready: boolean; initialize: boolean }>;
  initParameters(tensors: readonly NamedTensor[]): Promise<void>;
  pull(minVersion?: MinVersion, dtype?: Dtype): Promise<PulledParameters>;
  push(gradients: readonly (NamedTensor | SparseTensor)[], baseVersion: number, o: PushOptions): Promise<PushGradientsResponse>;
  /**
   * The parameters a push's answer carries (PushOptions.returnParameters, when the server could
   * honour it), as a pull would give them; undefined when it carries none.
   */
  parametersIn(answer: PushGradientsResponse): PulledParameters | undefined;
  nextAssignment(epochs: number): Promise<Assignment>;
  /** Gives up the slot at once (the worker is being stopped); its replacement continues from its position. */
  leave(): Promise<void>;
  reportMetrics(metrics: MessageInitShape<typeof WorkerMetricsSchema>): Promise<void>;
  /** Tells the server this worker trained its last part; `extras` are for the exported model. */
  finish(finalMetrics: MessageInitShape<typeof WorkerMetricsSchema>, extras?: MessageInitShape<typeof ModelExtrasSchema>): Promise<boolean>;
}

export class WorkerConnection implements ParameterConnection {
  readonly client: ParameterServerClient;
  readonly session: WorkerSession;
  readonly config: RunConfig;
  readonly resumeFrom: DataPosition | undefined;
  /** Deadline for each call, milliseconds. Sync pushes wait for the whole barrier within it. */
  readonly callTimeoutMs: number;
  readonly #chunkBytes: number;
  /**
   * Buffers pulls (and the parameters push answers carry) decode into, reused from pull to pull (a
   * fresh 45 MB a step costs page faults).
   */
  readonly #pullBuffers = new Map<string, Float32Array>();
  /** Memory for the wire bytes of 16-bit pushes, reused from push to push for the same reason. */
  readonly #pushWire = new WireArena();
  /** The framing of the pushed tensors' chunks, the same from push to push. */
  readonly #pushFramings = ChunkFramings.messages();
  /** The parameters hand-framed pushes' answers carried, decoded as they arrived (into the pull buffers). */
  readonly #carried = new WeakMap<PushGradientsResponse, PulledParameters>();

  constructor(client: ParameterServerClient, registration: RegisterResponse, callTimeoutMs: number) {
    if (registration.session === undefined || registration.config === undefined) {
      throw new Error("registration answer lacks a session or configuration");
    }
    this.client = client;
    this.session = registration.session;
    this.config = registration.config;
    this.resumeFrom = registration.resumeFrom;
    this.callTimeoutMs = callTimeoutMs;
    this.#chunkBytes = Math.min(DEFAULT_CHUNK_BYTES, registration.config.maxChunkBytes || DEFAULT_CHUNK_BYTES);
  }

  get slot(): number {
    return this.session.slot;
  }

  static async register(
    client: ParameterServerClient,
    request: { preferredSlot: number; jobFingerprint: string; workerLabel: string; requirePreferredSlot?: boolean },
    callTimeoutMs: number,
  ): Promise<WorkerConnection> {
    const answer = await client.register(request, { timeoutMs: callTimeoutMs });
    return new WorkerConnection(client, answer, callTimeoutMs);
  }

  async heartbeat(): Promise<void> {
    // A heartbeat older than the lease is useless: give up on it then, rather than letting them pile up.
    await this.client.heartbeat({ session: this.session }, { timeoutMs: Math.min(this.callTimeoutMs, this.config.leaseMs) });
  }

  /** Blocks (server-bounded) until the parameters exist or this worker must create them. */
  async waitForParameters(): Promise<{ ready: boolean; initialize: boolean }> {
    const r = await this.client.waitForParameters({ session: this.session }, { timeoutMs: this.callTimeoutMs });
    return { ready: r.ready, initialize: r.initialize };
  }

  async initParameters(tensors: readonly NamedTensor[]): Promise<void> {
    const session = this.session;
    const chunkBytes = this.#chunkBytes;
    async function* messages() {
      yield create(InitParametersRequestSchema, { message: { case: "header", value: { session, tensorCount: tensors.length } } });
      for (const chunk of chunkTensors(tensors, Dtype.FLOAT32, chunkBytes)) {
        yield create(InitParametersRequestSchema, { message: { case: "chunk", value: chunk } });
      }
    }
    await this.client.initParameters(messages(), { timeoutMs: this.callTimeoutMs });
  }

  /**
   * The current parameters (at least `minVersion`, if the server reaches it within its wait bound).
   * The tensors' buffers are reused by the next pull, and by the next push that asks for the
   * parameters: copy what must outlive it.
   */
  async pull(min: MinVersion = 0, dtype: Dtype = Dtype.FLOAT32): Promise<PulledParameters> {
    const minVersion = typeof min === "number" ? min : (min[0] ?? 0);
    const collector = this.#pullCollector();
    const request = { session: this.session, dtype, minVersion };
    const fast = fastChannelFor(this.client);
    if (fast !== undefined) {
      const { version, tensorCount } = await fastPull(fast, request, collector, { timeoutMs: this.callTimeoutMs });
      return { version, tensors: collector.finish(tensorCount) };
    }
    let version: number | undefined;
    let count = 0;
    for await (const res of this.client.pullParameters(request, { timeoutMs: this.callTimeoutMs })) {
      if (res.message.case === "header") {
        version = res.message.value.version;
        count = res.message.value.tensorCount;
      } else if (res.message.case === "chunk") {
        collector.add(res.message.value);
      }
    }
    if (version === undefined) throw new Error("pull ended without a header");
    return { version, tensors: collector.finish(count) };
  }

  /** Pushes one gradient per parameter, computed against `baseVersion`. */
  async push(
    gradients: readonly (NamedTensor | SparseTensor)[],
    baseVersion: number,
    o: PushOptions,
  ): Promise<PushGradientsResponse> {
    const session = this.session;
    const chunkBytes = this.#chunkBytes;
    const header = { session, tensorCount: gradients.length, baseVersion, exampleCount: o.exampleCount, position: o.position, returnParameters: o.returnParameters ?? false };
    const fast = fastChannelFor(this.client);
    if (fast !== undefined && !gradients.some(isSparse)) {
      const { answer, parameters } = await fastPush(fast, header, gradients as readonly NamedTensor[], {
        dtype: o.dtype ?? Dtype.FLOAT32,
        chunkBytes,
        timeoutMs: this.callTimeoutMs,
        collector: this.#pullCollector(),
        arena: this.#pushWire,
        framings: this.#pushFramings,
      });
      if (parameters !== undefined) this.#carried.set(answer, { version: answer.parametersVersion, tensors: parameters });
      return answer;
    }
    async function* messages() {
      yield create(PushGradientsRequestSchema, { message: { case: "header", value: header } });
      for (const chunk of chunkTensors(gradients, o.dtype ?? Dtype.FLOAT32, chunkBytes)) {
        yield create(PushGradientsRequestSchema, { message: { case: "chunk", value: chunk } });
      }
    }
    return this.client.pushGradients(messages(), { timeoutMs: this.callTimeoutMs });
  }

  parametersIn(answer: PushGradientsResponse): PulledParameters | undefined {
    const carried = this.#carried.get(answer);
    if (carried !== undefined) return carried;
    if (answer.parameters.length === 0) return undefined;
    // Connect's path (sparse pushes) parsed the answer whole.
    const collector = this.#pullCollector();
    for (const chunk of answer.parameters) collector.add(chunk);
    return { version: answer.parametersVersion, tensors: collector.finish(collector.tensors.length) };
  }

  /** Collects parameters (a pull's, or those a push's answer carries) into the reused pull buffers. */
  #pullCollector(): TensorCollector {
    return new TensorCollector({ maxElements: Number.MAX_SAFE_INTEGER, maxTensors: Number.MAX_SAFE_INTEGER, reuse: this.#pullBuffers });
  }

  /** Blocks (server-bounded) until there is a part of the data to train, or nothing more to do. */
  async nextAssignment(epochs: number): Promise<Assignment> {
    const r = await this.client.nextAssignment({ session: this.session, epochs }, { timeoutMs: this.callTimeoutMs });
    const next = r.next;
    switch (next.case) {
      case "train":
        return { kind: "train", epoch: next.value.epoch, part: next.value.part, parts: next.value.parts, firstBatch: next.value.firstBatch, plannedSlot: next.value.plannedSlot };
      case "done":
      case "retire":
      case "wait":
        return { kind: next.case };
      default:
        throw new Error("NextAssignment answered with nothing; the server is older than this worker");
    }
  }

  async reportMetrics(metrics: MessageInitShape<typeof WorkerMetricsSchema>): Promise<void> {
    await this.client.reportMetrics({ session: this.session, metrics }, { timeoutMs: this.callTimeoutMs });
  }

  async leave(): Promise<void> {
    await this.client.leave({ session: this.session }, { timeoutMs: Math.min(this.callTimeoutMs, 5000) });
  }

  async finish(finalMetrics: MessageInitShape<typeof WorkerMetricsSchema>, extras?: MessageInitShape<typeof ModelExtrasSchema>): Promise<boolean> {
    const r = await this.client.finish({ session: this.session, finalMetrics, modelExtras: extras }, { timeoutMs: this.callTimeoutMs });
    return r.runComplete;
  }
}
