import type { TensorChunk } from "../gen/paramserver/v1/parameter_server_pb.js";
import { elementCount, type NamedTensor } from "../named-tensor.ts";
import { TensorAssembler, type ChunkFraming } from "./tensor-assembler.ts";
import { TensorStreamError } from "./tensor-stream-error.ts";

/**
 * Collects a whole tensor stream into fresh NamedTensors (used where the receiver has no buffers of
 * its own yet: parameter initialisation on the server, pulls on the worker).
 */
export class TensorCollector {
  readonly tensors: NamedTensor[] = [];
  readonly #assembler: TensorAssembler;

  /**
   * With `reuse`, tensors are decoded into the buffers of earlier collections of the same names
   * and sizes (and new ones are added to it), so a pull every step allocates nothing: the returned
   * tensors are then only valid until the next collection with the same map.
   */
  constructor(limits: { maxElements: number; maxTensors: number; reuse?: Map<string, Float32Array> }) {
    let total = 0;
    this.#assembler = new TensorAssembler((name, shape) => {
      if (this.tensors.length >= limits.maxTensors) {
        throw new TensorStreamError(`more than ${limits.maxTensors} tensors`);
      }
      if (shape.some((d) => !Number.isInteger(d) || d < 0)) {
        throw new TensorStreamError(`tensor "${name}": invalid shape [${shape}]`);
      }
      const n = elementCount(shape);
      total += n;
      if (total > limits.maxElements) {
        throw new TensorStreamError(`tensor "${name}" takes the stream past ${limits.maxElements} elements`);
      }
      let data = limits.reuse?.get(name);
      if (data?.length !== n) {
        data = new Float32Array(n);
        limits.reuse?.set(name, data);
      }
      this.tensors.push({ name, shape: [...shape], data });
      return { shape, into: data };
    });
  }

  add(chunk: TensorChunk): void {
    this.#assembler.add(chunk);
  }

  /** A chunk whose data comes in pieces (see TensorAssembler.addPieces). */
  addPieces(framing: ChunkFraming, pieces: readonly Uint8Array[], dataLength: number): void {
    this.#assembler.addPieces(framing, pieces, dataLength);
  }

  /** A dense chunk whose data arrives after this (see TensorAssembler.beginChunk). */
  beginChunk(framing: ChunkFraming, dataLength: number): void {
    this.#assembler.beginChunk(framing, dataLength);
  }

  writeData(piece: Uint8Array): void {
    this.#assembler.writeData(piece);
  }

  endChunk(): void {
    this.#assembler.endChunk();
  }

  finish(expectedCount: number): NamedTensor[] {
    this.#assembler.finish(expectedCount);
    return this.tensors;
  }
}
