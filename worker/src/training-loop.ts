/**
 * One worker's training: ask the server which part of the data to train (NextAssignment: its part of
 * the next epoch, the rest of a retired worker's, or nothing), then pull the parameters, compute a
 * gradient on a minibatch of that part, push it, repeat; evaluate on the held-out test set after its
 * own part of every epoch; report progress to the server.
 *
 * What a push's refusal means for the loop (the data is never skipped because of it):
 * - Aborted: the gradient was too stale (async) or its step was applied without it (sync, a
 *   straggler) — recompute the same batch on fresher parameters.
 * - AlreadyExists: this slot already has a gradient in the open step (a replacement inherited it) —
 *   wait for the next step and recompute the same batch.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { classifyFailure } from "./connection/retry.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Dtype, Mode, type WorkerMetricsSchema } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import type { Logger } from "@distributed-ps/common/log.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import type { Dataset } from "./data/dataset.ts";
import { trainBatch } from "./data/augment.ts";
import { checkSliceHoldsABatch } from "./data/load-dataset.ts";
import { epochBatches, sliceForPart } from "./data/partition.ts";
import type { TrainingEngine } from "./model/engine.ts";
import { modelExtras } from "./model-extras.ts";
import { nextVersions, type MinVersion, type ParameterConnection, type PulledParameters } from "./connection/worker-connection.ts";
import { StepProfile } from "./step-profile.ts";
import type { TopKCompressor } from "./topk.ts";
import { addInto } from "@distributed-ps/common/kernels/simd.ts";
import { DEFAULT_CHUNK_BYTES } from "@distributed-ps/common/tensor-stream/chunk-tensors.ts";

export interface TrainingOptions {
  epochs: number;
  batchSize: number;
  /** Minibatches whose gradients are averaged locally into one push. */
  localSteps: number;
  seed: number;
  progressIntervalMs: number;
  /** Element type of the parameters on the wire (FLOAT16/BFLOAT16 halve the bytes of a pull). */
  pullDtype?: Dtype;
  /** Element type of the gradients on the wire. */
  pushDtype?: Dtype;
  /** Sends only the largest (gradient + residual) values of each tensor, with error feedback. */
  compressor?: TopKCompressor;
  /** Called after every step (a terminal's progress bar). */
  onProgress?: (p: { epoch: number; epochs: number; batch: number; batches: number; version: number }) => void;
}

export interface TrainingResult {
  steps: number;
  examples: number;
  retriedBatches: number;
  finalTestAccuracy: number;
  finalTestLoss: number;
  finalTrainLoss: number;
  trainSeconds: number;
  runComplete: boolean;
  /** The worker count was lowered and the server retired this worker's slot. */
  retired: boolean;
  /** Where the steps spent their time. */
  profile: StepProfile;
}

/** Gives up on a batch after this many refusals in a row (each refusal means fresher parameters). */
const MAX_RETRIES_PER_BATCH = 20;

export async function train(
  conn: ParameterConnection,
  trainer: TrainingEngine,
  data: Dataset,
  o: TrainingOptions,
  log: Logger,
): Promise<TrainingResult> {
  const started = Date.now();
  const sync = conn.config.mode === Mode.SYNC;

  let steps = 0;
  let examples = 0;
  let retriedBatches = 0;
  let minVersion: MinVersion = 0;
  let window = { loss: 0, correct: 0, count: 0, since: Date.now() };
  let lastTest = { loss: -1, accuracy: -1 };
  let lastVersion = 0;
  let lastEpoch = 0;
  const profile = new StepProfile();
  /** Whether pushes bring back the parameters (a model that fits in one message, pulled as float32); known after the first pull. */
  let oneTrip: boolean | undefined;
  let prefetched: PulledParameters | undefined;

  const metrics = (epoch: number, test?: { loss: number; accuracy: number }): MessageInitShape<typeof WorkerMetricsSchema> & { trainLoss: number; trainAccuracy: number; samplesPerSecond: number } => {
    const seconds = (Date.now() - window.since) / 1000;
    return {
      epoch,
      version: lastVersion,
      trainLoss: window.count > 0 ? window.loss / window.count : -1,
      trainAccuracy: window.count > 0 ? window.correct / window.count : -1,
      testAccuracy: test?.accuracy ?? -1,
      testLoss: test?.loss ?? -1,
      samplesPerSecond: seconds > 0 ? window.count / seconds : 0,
      timestampMs: Date.now(),
    };
  };

  // Mean training loss of the latest part of an epoch, for the final summary.
  let epochLoss = { sum: 0, count: 0 };
  let retired = false;
  // The server says which part of which epoch's data to train next; see DataPlan on the server.
  for (;;) {
    const a = await conn.nextAssignment(o.epochs);
    if (a.kind === "wait") {
      log.debug("waiting for the next epoch boundary to get a part of the data");
      continue;
    }
    if (a.kind !== "train") {
      retired = a.kind === "retire";
      if (retired) log.info("the worker count was lowered and this slot retired: stopping");
      break;
    }
    const { epoch } = a;
    lastEpoch = epoch;
    const own = a.plannedSlot === conn.slot;
    checkSliceHoldsABatch(data.train.count, a.parts, o.batchSize);
    const slice = sliceForPart(data.train.count, a.part, a.parts, o.seed);
    const batches = epochBatches(slice, o.batchSize, o.seed + a.part * 7919, epoch);
    const firstBatch = Math.min(a.firstBatch, batches.length);
    const what = `epoch ${epoch + 1}/${o.epochs} part ${a.part} of ${a.parts}`;
    if (!own) log.info(`${what}: taking over from batch ${firstBatch} the part planned for slot ${a.plannedSlot} (retired, or its worker is gone)`);
    else if (firstBatch > 0) log.info(`resuming slot ${conn.slot} at epoch ${epoch + 1}, batch ${firstBatch}`);
    log.info(`${what}: ${batches.length - firstBatch} batches of ${o.batchSize} from a slice of ${slice.length} examples`);
    epochLoss = { sum: 0, count: 0 };

    for (let b = firstBatch; b < batches.length; ) {
      const group = batches.slice(b, Math.min(b + o.localSteps, batches.length));
      const position = { epoch, batch: b + group.length, part: a.part, batches: batches.length };
      for (let attempt = 0; ; attempt++) {
        profile.mark("other");
        // The parameters the previous push's answer carried are the ones a pull would fetch now.
        const pulled: PulledParameters = prefetched ?? (await conn.pull(minVersion, o.pullDtype));
        prefetched = undefined;
        oneTrip ??= fitsInOneMessage(pulled, conn.config.maxChunkBytes) && (o.pullDtype ?? Dtype.FLOAT32) === Dtype.FLOAT32;
        profile.mark("pull");
        trainer.setParameters(pulled.tensors);
        lastVersion = pulled.version;
        profile.mark("set_parameters");
        const { gradient, loss, correct, count } = await averagedGradient(trainer, data, group, profile);
        try {
          const wire = o.compressor ? o.compressor.compress(gradient) : gradient;
          // A small model's step is mostly round trips: its push's answer brings the next step's parameters.
          const returnParameters = oneTrip && b + group.length < batches.length;
          const r = await conn.push(wire, pulled.version, { exampleCount: count, position, dtype: o.pushDtype, bases: pulled.bases, returnParameters });
          if (returnParameters) prefetched = conn.parametersIn(r);
          profile.mark("push");
          profile.step();
          lastVersion = r.version;
          minVersion = 0;
          window.loss += loss * count;
          window.correct += correct;
          window.count += count;
          epochLoss.sum += loss * count;
          epochLoss.count += count;
          examples += count;
          steps++;
          break;
        } catch (raw) {
          profile.mark("push");
          const err = ConnectError.from(raw);
          if (classifyFailure(err) !== "refused" || attempt >= MAX_RETRIES_PER_BATCH) throw err;
          retriedBatches++;
          log.debug(`push refused (${Code[err.code]}: ${err.rawMessage}); recomputing the batch`);
          // In sync mode the fresh parameters are the next step's: wait for them rather than spin.
          minVersion = sync ? nextVersions(pulled) : 0;
        }
      }
      b += group.length;
      o.onProgress?.({ epoch, epochs: o.epochs, batch: b, batches: batches.length, version: lastVersion });

      if (Date.now() - window.since >= o.progressIntervalMs) {
        const m = metrics(epoch);
        log.info(
          `epoch ${epoch + 1}/${o.epochs} batch ${b}/${batches.length} | version ${lastVersion} | loss ${m.trainLoss.toFixed(4)}` +
            ` | train acc ${(m.trainAccuracy * 100).toFixed(1)}% | ${m.samplesPerSecond.toFixed(0)} samples/s`,
        );
        await conn.reportMetrics(m);
        window = { loss: 0, correct: 0, count: 0, since: Date.now() };
      }
    }

    prefetched = undefined; // the next part starts from a pull
    // The end of this worker's own part is its end of the epoch: evaluate (not after a part taken over).
    if (!own) continue;
    profile.mark("other");
    lastTest = await trainer.evaluate(data.test.x, data.test.y, data.test.count);
    profile.restart(); // evaluation is not a step's time
    const m = metrics(epoch, lastTest);
    log.info(`epoch ${epoch + 1}/${o.epochs} done | test accuracy ${(lastTest.accuracy * 100).toFixed(2)}% | test loss ${lastTest.loss.toFixed(4)}`);
    await conn.reportMetrics(m);
    window = { loss: 0, correct: 0, count: 0, since: Date.now() };
  }

  // Evaluate the final parameters (the last push changed them after the last evaluation).
  const final = await conn.pull();
  trainer.setParameters(final.tensors);
  lastVersion = final.version;
  lastTest = await trainer.evaluate(data.test.x, data.test.y, data.test.count);
  // With the batch-norm statistics that evaluation used: the exported model holds their mean over
  // the workers (with one worker, it is the model just evaluated).
  const runComplete = await conn.finish(metrics(lastEpoch, lastTest), modelExtras(trainer, conn.config.maxChunkBytes || DEFAULT_CHUNK_BYTES, log));
  return {
    steps,
    examples,
    retriedBatches,
    finalTestAccuracy: lastTest.accuracy,
    finalTestLoss: lastTest.loss,
    finalTrainLoss: epochLoss.count > 0 ? epochLoss.sum / epochLoss.count : -1,
    trainSeconds: (Date.now() - started) / 1000,
    runComplete,
    retired,
    profile,
  };
}

/** Whether every pulled tensor fits, as float32, in one message of `maxChunkBytes` (what the server can put in a push's answer). */
function fitsInOneMessage(pulled: PulledParameters, maxChunkBytes: number): boolean {
  return maxChunkBytes > 0 && pulled.tensors.reduce((bytes, t) => bytes + t.data.length * 4, 0) <= maxChunkBytes;
}

/** Mean gradient over the batches of `group` (local accumulation), with loss and accuracy counts. */
async function averagedGradient(trainer: TrainingEngine, data: Dataset, group: readonly Int32Array[], profile: StepProfile) {
  let gradient: NamedTensor[] | undefined;
  let loss = 0;
  let correct = 0;
  let count = 0;
  for (const indices of group) {
    const batch = trainBatch(data, indices); // gather + the dataset's training augmentation (CIFAR)
    profile.mark("batch");
    const r = await trainer.gradients(batch.x, batch.y, batch.count);
    profile.mark("compute");
    loss += r.loss * batch.count;
    correct += r.correct;
    count += batch.count;
    if (gradient === undefined) gradient = r.gradients;
    else gradient.forEach((g, i) => addInto(g.data, r.gradients[i]!.data));
  }
  if (group.length > 1) for (const g of gradient!) scaleInPlace(g.data, 1 / group.length);
  return { gradient: gradient!, loss: loss / count, correct, count };
}

function scaleInPlace(a: Float32Array, s: number): void {
  for (let i = 0; i < a.length; i++) a[i] = a[i]! * s;
}
