/**
 * One PushGradients call, from its header to its submission: what both handlers drive — Connect's
 * (service.ts: whole TensorChunk messages) and the hand-framed one (wire/fast-push-handler.ts: each
 * chunk's data in the socket buffers it arrived in). The same checks in the same order whichever
 * path a push takes, and nothing rebuilt into messages on the way.
 *
 *   open(header)   the session holds its slot, the parameters exist, the tensor count matches, the
 *                  aggregator admits the push (staleness, an open step), its data position fits
 *   add(chunk), addPieces(framing, pieces) or beginChunk/writeData/endChunk
 *                  each chunk within max_chunk_bytes, decoded into the gradient as it arrives (the
 *                  lease renewed with every chunk: a slow upload keeps its slot)
 *   submit()       every tensor arrived whole, the session still holds the slot, then the aggregator
 *   abandon()      what a failed upload received is released
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { Dtype, PushGradientsResponseSchema, type PushGradientsResponse, type PushHeader, type TensorChunk } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { valueFormat } from "@distributed-ps/common/dtype.ts";
import { elementCount } from "@distributed-ps/common/named-tensor.ts";
import { chunkTensors } from "@distributed-ps/common/tensor-stream/chunk-tensors.ts";
import { TensorAssembler, type ChunkFraming } from "@distributed-ps/common/tensor-stream/tensor-assembler.ts";
import { TensorStreamError } from "@distributed-ps/common/tensor-stream/tensor-stream-error.ts";
import { Progress } from "./progress.ts";
import type { Slot } from "./slot.ts";
import type { ParameterStore, Snapshot } from "../store/parameter-store.ts";
import { ReceivedGradient } from "./received-gradient.ts";
import type { TrainingRun } from "./training-run.ts";

export class GradientUpload {
  readonly #run: TrainingRun;
  readonly #header: PushHeader;
  readonly #slot: Slot;
  readonly #progress: Progress | undefined;
  readonly #gradient: ReceivedGradient;
  readonly #assembler: TensorAssembler;
  #released = false;

  /** Checks the header and admits the push; throws the refusal (a ConnectError) otherwise. */
  static open(run: TrainingRun, header: PushHeader): GradientUpload {
    const { membership, store, aggregator } = run;
    const slot = membership.authenticate(header.session);
    if (!store.initialized) {
      throw new ConnectError("PushGradients: the parameters are not initialised yet; call WaitForParameters first", Code.FailedPrecondition);
    }
    if (header.tensorCount !== store.tensorCount) {
      throw new ConnectError(`PushGradients: header announces ${header.tensorCount} tensors, the parameters have ${store.tensorCount}`, Code.InvalidArgument);
    }
    aggregator.admit(slot, header.baseVersion);
    // Checked before the gradient streams in: a push for data the slot was not given is refused at once.
    return new GradientUpload(run, header, slot, progressOf(slot, header));
  }

  private constructor(run: TrainingRun, header: PushHeader, slot: Slot, progress: Progress | undefined) {
    this.#run = run;
    this.#header = header;
    this.#slot = slot;
    this.#progress = progress;
    const { store } = run;
    const gradient = new ReceivedGradient(store.tensorCount, run.buffers);
    this.#gradient = gradient;
    this.#assembler = new TensorAssembler((name, shape, encoding) => {
      const i = store.indexOf(name);
      if (i === undefined) throw new TensorStreamError(`gradient for unknown tensor "${name}"`);
      const expected = store.shapeOf(name)!;
      if (shape.length !== expected.length || shape.some((d, k) => d !== expected[k])) {
        throw new TensorStreamError(`gradient for "${name}" has shape [${shape}], the parameter has shape [${expected}]`);
      }
      return { shape, ...gradient.receive(i, elementCount(shape), valueFormat(encoding.dtype), encoding.sparse) };
    });
  }

  /** A whole chunk (Connect's path). */
  add(chunk: TensorChunk): void {
    this.addPieces(chunk, [chunk.data], chunk.data.length);
  }

  /** A chunk whose `dataLength` bytes of data are the socket buffers they arrived in (the hand-framed path). */
  addPieces(framing: ChunkFraming, pieces: readonly Uint8Array[], dataLength: number): void {
    this.#checkChunk(framing, dataLength);
    this.#assembler.addPieces(framing, pieces, dataLength);
  }

  /** A dense chunk whose data follows through writeData() as it arrives, then endChunk() (the hand-framed path). */
  beginChunk(framing: ChunkFraming, dataLength: number): void {
    this.#checkChunk(framing, dataLength);
    this.#assembler.beginChunk(framing, dataLength);
  }

  writeData(piece: Uint8Array): void {
    this.#assembler.writeData(piece);
  }

  endChunk(): void {
    this.#assembler.endChunk();
    this.#run.membership.renew(this.#slot, this.#header.session!.token);
  }

  /** The chunk within max_chunk_bytes; the lease renewed (a slow upload keeps its slot). */
  #checkChunk(framing: ChunkFraming, dataLength: number): void {
    checkChunkBytes("PushGradients", framing.name, dataLength + framing.indices.length, this.#run.options.maxChunkBytes);
    this.#run.membership.renew(this.#slot, this.#header.session!.token);
  }

  /** Hands the complete gradient to the aggregator; resolves with the push's answer. */
  async submit(signal: AbortSignal): Promise<PushAnswer> {
    try {
      this.#assembler.finish(this.#header.tensorCount);
      // The upload took time: the session must still hold the slot (its lease may have run out
      // and a replacement taken over), checked with no await before the gradient counts.
      this.#run.membership.authenticate(this.#header.session);
    } catch (err) {
      this.abandon();
      throw err;
    }
    this.#released = true; // the aggregator owns the gradient now
    const outcome = await this.#run.aggregator.submit({ slot: this.#slot, baseVersion: this.#header.baseVersion, progress: this.#progress, signal }, this.#gradient);
    this.#run.emit("pushed", { slot: this.#slot.index, examples: this.#header.exampleCount, staleness: outcome.staleness, version: outcome.version });
    const parameters = this.#header.returnParameters ? parametersForAnswer(this.#run.store, this.#run.options.maxChunkBytes) : undefined;
    return { response: create(PushGradientsResponseSchema, { ...outcome, parametersVersion: parameters?.version ?? 0 }), parameters };
  }

  /** Releases what was received (an upload that failed or was cancelled). */
  abandon(): void {
    if (this.#released) return;
    this.#released = true;
    this.#gradient.release();
  }
}

/**
 * What a push is answered with. The parameters are not copied into the message here: the
 * hand-framed handler writes them from the snapshot as they are (wire/fast-push-handler.ts), and
 * Connect's handler copies them in (answerMessage).
 */
export interface PushAnswer {
  /** The outcome, and parameters_version when `parameters` is set; its `parameters` field is empty. */
  response: PushGradientsResponse;
  /** The version the answer carries (PushHeader.return_parameters), for whoever writes the answer to release. */
  parameters: Snapshot | undefined;
}

/**
 * The parameters for a push's answer (PushHeader.return_parameters): a snapshot of the current
 * version if every tensor fits in one float32 chunk and all of them in one message
 * (max_chunk_bytes in all); none otherwise, and the worker pulls.
 */
function parametersForAnswer(store: ParameterStore, maxChunkBytes: number): Snapshot | undefined {
  return store.elementCount * 4 > maxChunkBytes ? undefined : store.acquire();
}

/** The answer as one message, the parameters copied in (every tensor one float32 chunk); the snapshot released. */
export function answerMessage(answer: PushAnswer): PushGradientsResponse {
  const { response, parameters } = answer;
  if (parameters === undefined) return response;
  try {
    response.parameters = [...chunkTensors(parameters.tensors, Dtype.FLOAT32, Number.MAX_SAFE_INTEGER)].map((c) => ({ ...c, data: c.data.slice() }));
    return response;
  } finally {
    parameters.release();
  }
}

/** Refuses a chunk whose payload is over the bound RunConfig.max_chunk_bytes announces (not the
 *  message limit above it); InitParameters and PushGradients alike. */
export function checkChunkBytes(rpc: string, name: string, payload: number, maxChunkBytes: number): void {
  if (payload > maxChunkBytes) {
    throw new ConnectError(`${rpc}: a chunk of "${name}" carries ${payload} bytes, more than max_chunk_bytes (${maxChunkBytes})`, Code.InvalidArgument);
  }
}

/**
 * How a push moves its slot through the data. A slot working through NextAssignment must name the
 * part it was given: a push for another part means the worker and the server disagree about who
 * trains what, and counting it would train some examples twice.
 */
function progressOf(slot: Slot, header: PushHeader): Progress | undefined {
  const position = header.position;
  if (position === undefined) return undefined;
  const part = slot.part;
  if (part !== undefined && (position.epoch !== part.epoch || position.part !== part.index)) {
    throw new ConnectError(
      `PushGradients: the gradient is for epoch ${position.epoch + 1} part ${position.part}, but slot ${slot.index} was assigned ` +
        `epoch ${part.epoch + 1} part ${part.index}; call NextAssignment`,
      Code.FailedPrecondition,
    );
  }
  if (part !== undefined && part.holder !== slot.index) {
    // Its worker was gone long enough for the part to go to another slot, and is back.
    throw new ConnectError(
      `PushGradients: epoch ${part.epoch + 1} part ${part.index} is now trained by slot ${part.holder ?? "(none yet)"}; call NextAssignment`,
      Code.FailedPrecondition,
    );
  }
  if (part !== undefined && position.batch <= part.batch) {
    throw new ConnectError(
      `PushGradients: epoch ${position.epoch + 1} part ${position.part} is already counted up to batch ${part.batch}, and this gradient ends at batch ${position.batch}; call NextAssignment`,
      Code.FailedPrecondition,
    );
  }
  return new Progress(part, position, header.exampleCount);
}
