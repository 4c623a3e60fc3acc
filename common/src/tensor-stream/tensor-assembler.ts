/**
 * Putting a tensor stream back together, checking every rule of it (see chunk-tensors.ts), so a
 * malformed stream is refused with a message that says what was wrong, before anything is applied.
 */
import { Dtype, type TensorChunk } from "../gen/paramserver/v1/parameter_server_pb.js";
import { bytesPerElement, countNonFiniteElements, decodeElements, dtypeName, valueFormat } from "../dtype.ts";
import type { EncodedValues } from "../encoded-values.ts";
import { elementCount } from "../named-tensor.ts";
import { TensorStreamError } from "./tensor-stream-error.ts";

/**
 * What the receiver requires of an incoming tensor; returned by the `expect` callback. Its buffer's
 * length must equal the shape's element count.
 */
export type TensorExpectation =
  /** Decode the elements into `into`. */
  | { shape: readonly number[]; into: Float32Array }
  /**
   * Keep a dense tensor's elements as the wire encoded them (copied into `keep`, whose format must
   * be the tensor's dtype), checked for NaN and infinity.
   */
  | { shape: readonly number[]; keep: EncodedValues };

/** What the first chunk of a tensor says about how it is sent. */
export interface TensorEncoding {
  dtype: Dtype;
  sparse: boolean;
}

/** A TensorChunk's fields without its data, which a streaming reader has in pieces (wire/tensor-message-reader.ts). */
export type ChunkFraming = Pick<TensorChunk, "name" | "shape" | "dtype" | "byteOffset" | "sparse" | "sparseCount" | "indices">;

/** The tensor being received. */
interface CurrentTensor {
  name: string;
  dtype: Dtype;
  /** Where the elements go: decoded into `into`, or kept in `keep`. */
  into: Float32Array | undefined;
  keep: EncodedValues | undefined;
  /** Bytes the whole tensor takes on the wire. */
  bytes: number;
  /** Bytes of it received so far. */
  nextByte: number;
  sparse: boolean;
}

/** The chunk whose data is arriving. */
interface OpenChunk {
  /** Byte offset of the chunk's data within the tensor. */
  offset: number;
  /** Bytes of data the chunk announced, and those written so far. */
  length: number;
  written: number;
  /** Bytes of an element split between two pieces, held in the assembler's carry (at most size − 1). */
  carried: number;
  nonFinite: number;
  /** A sparse chunk: its values as they arrived, and its indices, scattered at its end. */
  sparse: { values: Uint8Array[]; indices: Uint8Array } | undefined;
}

/**
 * Receives the chunks of a tensor stream in order and decodes them into caller-provided buffers.
 *
 * `expect(name, shape)` is called at the first chunk of each tensor; it returns where to decode it,
 * or throws TensorStreamError (for example for an unknown name or a shape that differs from the
 * stored one). `allowedDtypes` bounds what the sender may use.
 *
 * Whole chunks go to add(); a reader that has a chunk's data in pieces (the socket buffers it
 * arrived in, without assembling the message) uses addPieces(), or, for a dense chunk whose data
 * is still arriving, beginChunk(), writeData() for each piece and endChunk(): both check exactly
 * what add() does.
 */
export class TensorAssembler {
  readonly #expect: (name: string, shape: readonly number[], encoding: TensorEncoding) => TensorExpectation;
  readonly #allowNonFinite: boolean;
  readonly #received = new Set<string>();
  #current: CurrentTensor | undefined;
  /** The dense chunk whose data is arriving (beginChunk … writeData … endChunk). */
  #open: OpenChunk | undefined;
  /** Room for an element split between two pieces (its own per assembler: pulls from several shards interleave). */
  readonly #carry = new Uint8Array(4);
  #chunks = 0;

  constructor(
    expect: (name: string, shape: readonly number[], encoding: TensorEncoding) => TensorExpectation,
    options: { allowNonFinite?: boolean } = {},
  ) {
    this.#expect = expect;
    this.#allowNonFinite = options.allowNonFinite ?? false;
  }

  /** Names of the tensors completely received so far, in arrival order. */
  get received(): ReadonlySet<string> {
    return this.#received;
  }

  add(chunk: TensorChunk): void {
    this.addPieces(chunk, [chunk.data], chunk.data.length);
  }

  /**
   * A chunk whose `dataLength` bytes of data come as `pieces` — views of the socket buffers they
   * arrived in, for readers that do not assemble messages (wire/tensor-message-reader.ts). Pieces
   * may split elements.
   */
  addPieces(framing: ChunkFraming, pieces: readonly Uint8Array[], dataLength: number): void {
    this.beginChunk(framing, dataLength);
    for (const piece of pieces) this.writeData(piece);
    this.endChunk();
  }

  /**
   * A chunk whose `dataLength` bytes of data follow through writeData() as they arrive, then
   * endChunk() (a reader that has the chunk's other fields before its data). A dense chunk is
   * decoded piece by piece; a sparse one's values (few: a top-k selection) are held until its end.
   */
  beginChunk(framing: ChunkFraming, dataLength: number): void {
    if (this.#open !== undefined) throw new TensorStreamError(`chunk ${this.#chunks + 1} began before chunk ${this.#chunks} ended`);
    const cur = this.#begin(framing, dataLength);
    this.#open = {
      offset: Number(framing.byteOffset),
      length: dataLength,
      written: 0,
      carried: 0,
      nonFinite: 0,
      sparse: cur.sparse ? { values: [], indices: framing.indices } : undefined,
    };
  }

  /** The next piece of the open chunk's data; pieces may split elements. */
  writeData(piece: Uint8Array): void {
    const open = this.#open;
    const cur = this.#current;
    if (open === undefined || cur === undefined) throw new TensorStreamError("chunk data arrived outside a chunk");
    if (open.sparse === undefined) return this.#write(cur, open, piece);
    if (open.written + piece.length > open.length) {
      throw new TensorStreamError(`tensor "${cur.name}": more than the announced ${open.length} bytes of chunk data`);
    }
    open.sparse.values.push(piece);
    open.written += piece.length;
  }

  /** Checks that the open chunk's data arrived whole and moves past it. */
  endChunk(): void {
    const open = this.#open;
    const cur = this.#current;
    if (open === undefined || cur === undefined) throw new TensorStreamError("chunk ended outside a chunk");
    this.#open = undefined;
    if (open.written !== open.length) {
      throw new TensorStreamError(`tensor "${cur.name}": chunk at byte ${open.offset} ended after ${open.written} of its ${open.length} bytes`);
    }
    if (open.sparse !== undefined) {
      const values = open.sparse.values.length === 1 ? open.sparse.values[0]! : Buffer.concat(open.sparse.values, open.length);
      open.nonFinite = this.#scatter(cur.name, cur.dtype, cur.into!, values, open.sparse.indices, bytesPerElement(cur.dtype));
    }
    this.#advance(cur, open.offset, open.length, open.nonFinite);
  }

  /** Decodes the next piece of a chunk's data into its tensor. */
  #write(cur: CurrentTensor, open: OpenChunk, piece: Uint8Array): void {
    if (open.written + piece.length > open.length) {
      throw new TensorStreamError(`tensor "${cur.name}": more than the announced ${open.length} bytes of chunk data`);
    }
    const size = bytesPerElement(cur.dtype);
    const carry = this.#carry;
    let at = (open.offset + open.written) / size; // element index, fractional while an element is split
    let from = 0;
    if (open.carried > 0) {
      from = Math.min(size - open.carried, piece.length);
      carry.set(piece.subarray(0, from), open.carried);
      open.carried += from;
      if (open.carried === size) {
        open.nonFinite += this.#store(cur, carry.subarray(0, size), Math.floor(at));
        open.carried = 0;
      }
      at = Math.ceil(at);
    }
    const whole = Math.floor((piece.length - from) / size) * size;
    if (whole > 0) open.nonFinite += this.#store(cur, piece.subarray(from, from + whole), at);
    const rest = piece.length - from - whole;
    if (rest > 0) {
      carry.set(piece.subarray(from + whole), 0);
      open.carried = rest;
    }
    open.written += piece.length;
  }

  /** Decodes whole elements into the tensor from element `at`, or keeps them; returns how many are non-finite. */
  #store(cur: CurrentTensor, bytes: Uint8Array, at: number): number {
    if (cur.keep === undefined) return decodeElements(bytes, cur.dtype, cur.into!, at);
    cur.keep.append(bytes); // copies; in order, since chunks arrive without gaps
    return countNonFiniteElements(bytes, cur.dtype);
  }

  /** Checks a chunk's framing against the stream so far; returns the tensor it belongs to. */
  #begin(chunk: ChunkFraming, dataLength: number): CurrentTensor {
    this.#chunks++;
    const offset = Number(chunk.byteOffset);
    if (chunk.name === "") throw new TensorStreamError(`chunk ${this.#chunks} has no tensor name`);

    if (offset === 0) {
      if (this.#current !== undefined) {
        throw new TensorStreamError(
          `tensor "${this.#current.name}" ended after ${this.#current.nextByte} of ${this.#current.bytes} bytes ` +
            `when "${chunk.name}" began`,
        );
      }
      if (this.#received.has(chunk.name)) throw new TensorStreamError(`tensor "${chunk.name}" sent twice`);
      let size: number;
      try {
        size = bytesPerElement(chunk.dtype);
      } catch {
        throw new TensorStreamError(`tensor "${chunk.name}": unsupported dtype ${dtypeName(chunk.dtype)}`);
      }
      const shape = chunk.shape;
      const expectation = this.#expect(chunk.name, shape, { dtype: chunk.dtype, sparse: chunk.sparse });
      const elements = elementCount(shape);
      const into = "into" in expectation ? expectation.into : undefined;
      const keep = "keep" in expectation ? expectation.keep : undefined;
      const length = into?.length ?? keep!.length;
      if (length !== elements) {
        throw new TensorStreamError(`tensor "${chunk.name}": buffer holds ${length} elements, shape needs ${elements}`);
      }
      // The receiver's own mistakes, not the sender's:
      if (keep !== undefined && (chunk.sparse || keep.format !== valueFormat(chunk.dtype))) {
        throw new Error(`tensor "${chunk.name}": kept as ${keep.format}, sent as ${chunk.sparse ? "sparse " : ""}${dtypeName(chunk.dtype)}`);
      }
      if (chunk.sparse) {
        if (chunk.sparseCount > elements) {
          throw new TensorStreamError(`sparse tensor "${chunk.name}": ${chunk.sparseCount} values for ${elements} elements`);
        }
        into!.fill(0); // elements not sent are zero
      }
      const values = chunk.sparse ? chunk.sparseCount : elements;
      this.#current = { name: chunk.name, dtype: chunk.dtype, into, keep, bytes: values * size, nextByte: 0, sparse: chunk.sparse };
    }

    const cur = this.#current;
    if (cur === undefined) {
      throw new TensorStreamError(`chunk of tensor "${chunk.name}" at byte ${offset} arrived before its first chunk`);
    }
    if (chunk.name !== cur.name) {
      throw new TensorStreamError(`chunk of tensor "${chunk.name}" arrived while tensor "${cur.name}" was incomplete`);
    }
    if (offset !== cur.nextByte) {
      throw new TensorStreamError(`tensor "${cur.name}": chunk at byte ${offset}, expected byte ${cur.nextByte} (chunks out of order or missing)`);
    }
    if (offset !== 0 && chunk.dtype !== Dtype.UNSPECIFIED && chunk.dtype !== cur.dtype) {
      throw new TensorStreamError(`tensor "${cur.name}": dtype changed from ${dtypeName(cur.dtype)} to ${dtypeName(chunk.dtype)} mid-tensor`);
    }
    const size = bytesPerElement(cur.dtype);
    if (dataLength % size !== 0) {
      throw new TensorStreamError(`tensor "${cur.name}": chunk of ${dataLength} bytes is not a whole number of ${size}-byte elements`);
    }
    if (offset + dataLength > cur.bytes) {
      throw new TensorStreamError(`tensor "${cur.name}": ${offset + dataLength} bytes sent, shape holds ${cur.bytes}`);
    }
    if (dataLength === 0 && cur.bytes !== 0) {
      throw new TensorStreamError(`tensor "${cur.name}": empty chunk at byte ${offset}`);
    }
    if (!cur.sparse && chunk.indices.length > 0) throw new TensorStreamError(`tensor "${cur.name}": indices on a dense tensor`);
    return cur;
  }

  /** Counts a chunk's `length` bytes at `offset` as received, refusing non-finite values. */
  #advance(cur: CurrentTensor, offset: number, length: number, nonFinite: number): void {
    if (nonFinite > 0 && !this.#allowNonFinite) {
      throw new TensorStreamError(`tensor "${cur.name}": ${nonFinite} NaN or infinite value(s) near element ${offset / bytesPerElement(cur.dtype)}`);
    }
    cur.nextByte += length;
    if (cur.nextByte === cur.bytes) {
      this.#received.add(cur.name);
      this.#current = undefined;
    }
  }

  /** Decodes a sparse chunk's values and writes each to its index; returns the non-finite count. */
  #scatter(name: string, dtype: Dtype, into: Float32Array, data: Uint8Array, indexBytes: Uint8Array, size: number): number {
    const count = data.length / size;
    if (indexBytes.length !== count * 4) {
      throw new TensorStreamError(`sparse tensor "${name}": ${indexBytes.length / 4} indices for ${count} values in one chunk`);
    }
    const values = new Float32Array(count);
    const nonFinite = decodeElements(data, dtype, values, 0);
    const indices = new DataView(indexBytes.buffer, indexBytes.byteOffset, indexBytes.length);
    for (let i = 0; i < count; i++) {
      const at = indices.getUint32(i * 4, true);
      if (at >= into.length) throw new TensorStreamError(`sparse tensor "${name}": index ${at} outside its ${into.length} elements`);
      into[at] = values[i]!;
    }
    return nonFinite;
  }

  /** Checks that the stream ended on a tensor boundary with exactly `expectedCount` tensors. */
  finish(expectedCount: number): void {
    if (this.#open !== undefined) throw new TensorStreamError("stream ended inside a chunk's data");
    if (this.#current !== undefined) {
      throw new TensorStreamError(
        `stream ended inside tensor "${this.#current.name}" after ${this.#current.nextByte} of ${this.#current.bytes} bytes`,
      );
    }
    if (this.#received.size !== expectedCount) {
      throw new TensorStreamError(`stream carried ${this.#received.size} tensors, header announced ${expectedCount}`);
    }
  }
}
