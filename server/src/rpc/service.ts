/**
 * The RPC handlers: they translate messages to and from the training run and map every failure to a
 * ConnectError with the right code and a message that says what was wrong. Where a gradient goes:
 * pushGradients → GradientUpload (admission, validation, decode; the hand-framed push drives the
 * same one) → the run's Aggregator → Updater → Optimizer → ParameterStore.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  Dtype,
  InitParametersResponseSchema,
  Mode,
  NextAssignmentResponseSchema,
  ParameterServerService,
  PullParametersResponseSchema,
  RunConfigSchema,
  SlotState,
  type InitParametersRequest,
  type NextAssignmentResponse,
  type PullParametersRequest,
  type PullParametersResponse,
  type PushGradientsRequest,
  type RunConfig,
} from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { chunkTensors, pullChunkBytes } from "@distributed-ps/common/tensor-stream/chunk-tensors.ts";
import { TensorCollector } from "@distributed-ps/common/tensor-stream/tensor-collector.ts";
import { TensorStreamError } from "@distributed-ps/common/tensor-stream/tensor-stream-error.ts";
import type { Slot } from "../run/slot.ts";
import type { Snapshot } from "../store/parameter-store.ts";
import { answerMessage, checkChunkBytes, GradientUpload } from "../run/gradient-upload.ts";
import { shardList } from "../run/shards.ts";
import type { TrainingRun } from "../run/training-run.ts";

const MODES = { sync: Mode.SYNC, async: Mode.ASYNC, ssp: Mode.SSP } as const;
const SLOT_STATES = { free: SlotState.FREE, active: SlotState.ACTIVE, finished: SlotState.FINISHED } as const;

function slotState(s: Slot): SlotState {
  return s.retired && s.state === "free" ? SlotState.RETIRED : SLOT_STATES[s.state];
}

const MALFORMED = /^(parse binary|invalid envelope|received compressed envelope|protocol error)/;

/** Turns anything thrown inside a handler into a ConnectError with a meaningful code (the
 *  hand-framed push handler uses it too, so that a refusal reads the same on both paths). */
export function asConnectError(err: unknown): ConnectError {
  // Connect reports bytes that do not parse as the request message as Internal (as grpc-go
  // does); on our streams they are the client's fault, so say so.
  if (err instanceof ConnectError && err.code === Code.Internal && MALFORMED.test(err.rawMessage)) {
    return new ConnectError(`malformed request message: ${err.rawMessage}`, Code.InvalidArgument);
  }
  if (err instanceof ConnectError) return err;
  if (err instanceof TensorStreamError) return new ConnectError(err.message, Code.InvalidArgument);
  return ConnectError.from(err, Code.Internal);
}

/** Reads the first message of a client stream, which must be the header. */
async function readHeader<R extends { message: { case: string | undefined; value?: unknown } }, H>(
  requests: AsyncIterator<R>,
  headerCase: string,
  rpc: string,
): Promise<H> {
  const first = await requests.next();
  if (first.done) throw new ConnectError(`${rpc}: empty stream, expected a header first`, Code.InvalidArgument);
  if (first.value.message.case !== headerCase) {
    throw new ConnectError(`${rpc}: the first message must be a header, got ${first.value.message.case ?? "an empty message"}`, Code.InvalidArgument);
  }
  return first.value.message.value as H;
}

/** Feeds the remaining chunk messages of a client stream to `add`. */
async function readChunks<R extends PushGradientsRequest | InitParametersRequest>(
  requests: AsyncIterator<R>,
  rpc: string,
  add: (chunk: Extract<R["message"], { case: "chunk" }>["value"]) => void,
): Promise<void> {
  for (let next = await requests.next(); !next.done; next = await requests.next()) {
    const m = next.value.message;
    if (m.case !== "chunk") throw new ConnectError(`${rpc}: after the header only chunks may follow, got ${m.case ?? "an empty message"}`, Code.InvalidArgument);
    add(m.value as never);
  }
}

export function runConfig(run: TrainingRun, shardAddress: string): RunConfig {
  const o = run.options;
  return create(RunConfigSchema, {
    mode: MODES[o.mode],
    totalWorkers: run.membership.workerCount,
    stalenessBound: o.mode === "ssp" ? o.stalenessBound : o.maxStaleness,
    leaseMs: o.leaseMs,
    heartbeatIntervalMs: Math.max(50, Math.floor(o.leaseMs / 4)),
    maxChunkBytes: o.maxChunkBytes,
    shards: shardList(o.shard, shardAddress),
  });
}

/**
 * The checks and the wait of a pull, shared by the Connect handler and the fast path
 * (fast-pull.ts): the caller streams the snapshot and must release it.
 */
export async function startPull(run: TrainingRun, req: PullParametersRequest, signal: AbortSignal): Promise<{ snapshot: Snapshot; dtype: Dtype; chunkBytes: number }> {
  const { membership, store, options } = run;
  membership.authenticate(req.session);
  let chunkBytes: number;
  try {
    chunkBytes = pullChunkBytes(options.maxChunkBytes, req.maxMessageBytes);
  } catch (err) {
    throw new ConnectError(`PullParameters: ${(err as Error).message}`, Code.InvalidArgument);
  }
  if (!store.initialized) {
    throw new ConnectError("PullParameters: the parameters are not initialised yet; call WaitForParameters first", Code.FailedPrecondition);
  }
  if (req.minVersion > store.version) {
    await run.changed.until(() => store.version >= req.minVersion, options.waitTimeoutMs, signal);
  }
  const dtype = req.dtype === Dtype.UNSPECIFIED ? Dtype.FLOAT32 : req.dtype;
  if (dtype !== Dtype.FLOAT32 && dtype !== Dtype.FLOAT16 && dtype !== Dtype.BFLOAT16) {
    throw new ConnectError(`PullParameters: unsupported dtype ${dtype}`, Code.InvalidArgument);
  }
  return { snapshot: store.acquire(), dtype, chunkBytes };
}

export function createService(run: TrainingRun, shardAddress: string): ServiceImpl<typeof ParameterServerService> {
  const { membership, store, aggregator, options } = run;
  return {
    register(req) {
      const slot = membership.register(req.preferredSlot, req.jobFingerprint, req.workerLabel, req.requirePreferredSlot);
      return {
        session: { slot: slot.index, token: slot.token },
        config: runConfig(run, shardAddress),
        resumeFrom: slot.position,
      };
    },

    heartbeat(req) {
      membership.authenticate(req.session);
      return { leaseMs: options.leaseMs, version: store.version };
    },

    async waitForParameters(req, ctx) {
      const slot = membership.authenticate(req.session);
      if (run.trainingStarted()) return { ready: true };
      if (run.claimInitialization(slot)) return { initialize: true };
      // Wait for the parameters and the start quorum, or for the initialiser to vanish (then this
      // caller may be chosen instead). The quorum's own timeout wakes us too.
      const bound = Math.min(options.waitTimeoutMs, Math.max(1, run.startTimeoutLeftMs()) + 5);
      await run.changed.until(() => run.trainingStarted() || run.initializerVacant(), bound, ctx.signal);
      if (run.trainingStarted()) return { ready: true };
      return { initialize: run.claimInitialization(slot) };
    },

    async initParameters(requests) {
      try {
        const it = requests[Symbol.asyncIterator]();
        const header = await readHeader<InitParametersRequest, { session: Parameters<typeof membership.authenticate>[0]; tensorCount: number }>(
          it,
          "header",
          "InitParameters",
        );
        const slot = membership.authenticate(header.session);
        if (store.initialized) throw new ConnectError("InitParameters: the parameters are already initialised", Code.AlreadyExists);
        if (!run.isInitializer(slot)) {
          throw new ConnectError(`InitParameters: slot ${slot.index} was not chosen to initialise; call WaitForParameters`, Code.FailedPrecondition);
        }
        if (header.tensorCount < 1 || header.tensorCount > options.maxTensors) {
          throw new ConnectError(`InitParameters: tensor_count ${header.tensorCount} outside 1..${options.maxTensors}`, Code.InvalidArgument);
        }
        const collector = new TensorCollector({ maxElements: options.maxModelElements, maxTensors: header.tensorCount });
        const token = slot.token;
        await readChunks(it, "InitParameters", (c) => {
          checkChunkBytes("InitParameters", c.name, c.data.length + c.indices.length, options.maxChunkBytes);
          membership.renew(slot, token);
          collector.add(c);
        });
        const tensors = collector.finish(header.tensorCount);
        if (store.initialized) throw new ConnectError("InitParameters: the parameters are already initialised", Code.AlreadyExists);
        run.initialize(tensors);
        return create(InitParametersResponseSchema, {
          version: store.version,
          tensorCount: store.tensorCount,
          elementCount: BigInt(store.elementCount),
        });
      } catch (err) {
        throw asConnectError(err);
      }
    },

    async *pullParameters(req: PullParametersRequest, ctx: HandlerContext): AsyncGenerator<PullParametersResponse> {
      const { snapshot, dtype, chunkBytes } = await startPull(run, req, ctx.signal);
      try {
        yield create(PullParametersResponseSchema, {
          message: { case: "header", value: { version: snapshot.version, tensorCount: snapshot.tensors.length } },
        });
        for (const chunk of chunkTensors(snapshot.tensors, dtype, chunkBytes)) {
          if (ctx.signal.aborted) return;
          yield create(PullParametersResponseSchema, { message: { case: "chunk", value: chunk } });
        }
      } finally {
        snapshot.release();
      }
    },

    async pushGradients(requests, ctx) {
      try {
        const it = requests[Symbol.asyncIterator]();
        const header = await readHeader<PushGradientsRequest, Extract<PushGradientsRequest["message"], { case: "header" }>["value"]>(
          it,
          "header",
          "PushGradients",
        );
        const upload = GradientUpload.open(run, header);
        try {
          await readChunks(it, "PushGradients", (c) => upload.add(c));
        } catch (err) {
          upload.abandon();
          throw err;
        }
        return answerMessage(await upload.submit(ctx.signal));
      } catch (err) {
        throw asConnectError(err);
      }
    },

    reportMetrics(req) {
      const slot = membership.authenticate(req.session);
      if (req.metrics === undefined) throw new ConnectError("ReportMetrics: metrics missing", Code.InvalidArgument);
      run.recordMetrics(slot, req.metrics);
      return {};
    },

    finish(req) {
      const slot = membership.authenticate(req.session);
      // Checked before anything changes: refused extras leave the slot unfinished.
      if (req.modelExtras !== undefined) run.extras.record(slot.index, req.modelExtras);
      if (req.finalMetrics !== undefined) run.recordMetrics(slot, req.finalMetrics);
      membership.finish(req.session);
      return { runComplete: run.complete };
    },

    leave(req) {
      membership.leave(req.session);
      return {};
    },

    async nextAssignment(req, ctx) {
      const slot = membership.authenticate(req.session);
      if (shardList(options.shard, shardAddress).length > 1 && options.shard.index !== 0) {
        throw new ConnectError("NextAssignment: ask shard 0, which divides the data of a sharded run", Code.FailedPrecondition);
      }
      if (req.epochs < 1) throw new ConnectError("NextAssignment: epochs must be at least 1", Code.InvalidArgument);
      const a = await run.nextAssignment(slot, req.epochs, ctx.signal);
      if (a.kind !== "train") return create(NextAssignmentResponseSchema, { next: { case: a.kind, value: {} } as NextAssignmentResponse["next"] });
      const p = a.part;
      return { next: { case: "train", value: { epoch: p.epoch, part: p.index, parts: p.parts, firstBatch: p.batch, plannedSlot: p.plannedSlot } } };
    },

    setWorkerCount(req) {
      if (shardList(options.shard, shardAddress).length > 1) {
        throw new ConnectError("SetWorkerCount: elastic scaling needs an unsharded server; this run has several shards", Code.FailedPrecondition);
      }
      const r = run.resize(req.count);
      return { count: membership.workerCount, opened: r.opened, retired: r.retired };
    },

    getStatus() {
      membership.sweep();
      const now = Date.now();
      return {
        config: runConfig(run, shardAddress),
        version: store.version,
        initialized: store.initialized,
        runComplete: run.complete,
        staleGradientsRejected: aggregator.staleRejected,
        uptimeSeconds: (now - run.startedAt) / 1000,
        elementCount: BigInt(store.elementCount),
        slots: membership.slots.map((s) => ({
          slot: s.index,
          state: slotState(s),
          retiring: s.retired && s.state === "active",
          // A retired slot's data went to the others too, but "retired" says more.
          abandoned: s.abandoned && !s.retired,
          workerLabel: s.label,
          lastSeenMsAgo: s.lastSeen === 0 ? 0 : Math.max(0, now - s.lastSeen),
          pushes: s.pushes,
          stepsMissed: s.stepsMissed,
          registrations: s.registrations,
          latestMetrics: s.latestMetrics,
          position: s.position,
        })),
        epochs: run.plan.summary().map((e) => ({ ...e, examples: BigInt(e.examples) })),
      };
    },
  };
}
