/**
 * Cutting named tensors into TensorChunk messages and putting them back together.
 *
 * Rules of a tensor stream (both directions): the tensors follow one another; the chunks of one
 * tensor arrive in order without gaps; the first chunk of a tensor (byte_offset 0) carries its shape
 * and dtype; every chunk repeats the name. The receiver checks all of it, so a malformed stream is
 * refused with a message that says what was wrong, before anything is applied.
 */
import { endianness } from "node:os";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Dtype, TensorChunkSchema, type TensorChunk } from "./gen/paramserver/v1/parameter_server_pb.js";
import { bytesPerElement, decodeElements, dtypeName, encodeElements } from "./dtype.ts";
import { elementCount, isSparse, type NamedTensor, type SparseTensor } from "./named-tensor.ts";

// Float32Array views are in host byte order and the wire is little-endian. Every platform Node
// ships for (x64, arm64) is little-endian; refuse loudly rather than corrupt data elsewhere.
if (endianness() !== "LE") throw new Error("this program needs a little-endian host");

/** Default chunk payload: 1 MiB keeps messages small and HTTP/2 frames full. */
export const DEFAULT_CHUNK_BYTES = 1 << 20;

/** A malformed tensor stream; the message says what was wrong. Maps to InvalidArgument. */
export class TensorStreamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TensorStreamError";
  }
}

/**
 * Yields the chunks of `tensors` as `dtype`, each payload at most `chunkBytes` bytes. Sparse
 * tensors are sent as (index, value) pairs; their indices count towards the chunk size.
 */
export function* chunkTensors(
  tensors: readonly (NamedTensor | SparseTensor)[],
  dtype: Dtype = Dtype.FLOAT32,
  chunkBytes: number = DEFAULT_CHUNK_BYTES,
): Generator<TensorChunk> {
  const size = bytesPerElement(dtype);
  const perChunk = Math.max(1, Math.floor(chunkBytes / size));
  for (const t of tensors) {
    if (isSparse(t)) {
      yield* chunkSparse(t, dtype, Math.max(1, Math.floor(chunkBytes / (size + 4))));
      continue;
    }
    const n = t.data.length;
    if (n !== elementCount(t.shape)) {
      throw new TensorStreamError(`tensor "${t.name}" has ${n} elements but shape [${t.shape}]`);
    }
    let from = 0;
    do {
      const to = Math.min(n, from + perChunk);
      const chunk: MessageInitShape<typeof TensorChunkSchema> = {
        name: t.name,
        byteOffset: BigInt(from * size),
        data: encodeElements(t.data, from, to, dtype),
      };
      if (from === 0) {
        chunk.shape = [...t.shape];
        chunk.dtype = dtype;
      }
      yield create(TensorChunkSchema, chunk);
      from = to;
    } while (from < n);
  }
}

function* chunkSparse(t: SparseTensor, dtype: Dtype, perChunk: number): Generator<TensorChunk> {
  const n = t.values.length;
  if (t.indices.length !== n) throw new TensorStreamError(`sparse tensor "${t.name}" has ${t.indices.length} indices for ${n} values`);
  const size = bytesPerElement(dtype);
  let from = 0;
  do {
    const to = Math.min(n, from + perChunk);
    const chunk: MessageInitShape<typeof TensorChunkSchema> = {
      name: t.name,
      byteOffset: BigInt(from * size),
      data: encodeElements(t.values, from, to, dtype),
      indices: new Uint8Array(t.indices.buffer, t.indices.byteOffset + from * 4, (to - from) * 4),
    };
    if (from === 0) {
      chunk.shape = [...t.shape];
      chunk.dtype = dtype;
      chunk.sparse = true;
      chunk.sparseCount = n;
    }
    yield create(TensorChunkSchema, chunk);
    from = to;
  } while (from < n);
}

/** What the receiver requires of an incoming tensor; returned by the `expect` callback. */
export interface TensorExpectation {
  shape: readonly number[];
  /** Where to decode the elements; its length must equal the shape's element count. */
  into: Float32Array;
}

/**
 * Receives the chunks of a tensor stream in order and decodes them into caller-provided buffers.
 *
 * `expect(name, shape)` is called at the first chunk of each tensor; it returns where to decode it,
 * or throws TensorStreamError (for example for an unknown name or a shape that differs from the
 * stored one). `allowedDtypes` bounds what the sender may use.
 */
export class TensorAssembler {
  readonly #expect: (name: string, shape: readonly number[]) => TensorExpectation;
  readonly #allowNonFinite: boolean;
  readonly #received = new Set<string>();
  #current: { name: string; dtype: Dtype; into: Float32Array; bytes: number; nextByte: number; sparse: boolean } | undefined;
  #chunks = 0;

  constructor(
    expect: (name: string, shape: readonly number[]) => TensorExpectation,
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
      const expectation = this.#expect(chunk.name, shape);
      const elements = elementCount(shape);
      if (expectation.into.length !== elements) {
        throw new TensorStreamError(`tensor "${chunk.name}": buffer holds ${expectation.into.length} elements, shape needs ${elements}`);
      }
      if (chunk.sparse) {
        if (chunk.sparseCount > elements) {
          throw new TensorStreamError(`sparse tensor "${chunk.name}": ${chunk.sparseCount} values for ${elements} elements`);
        }
        expectation.into.fill(0); // elements not sent are zero
      }
      const values = chunk.sparse ? chunk.sparseCount : elements;
      this.#current = { name: chunk.name, dtype: chunk.dtype, into: expectation.into, bytes: values * size, nextByte: 0, sparse: chunk.sparse };
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
    if (chunk.data.length % size !== 0) {
      throw new TensorStreamError(`tensor "${cur.name}": chunk of ${chunk.data.length} bytes is not a whole number of ${size}-byte elements`);
    }
    if (offset + chunk.data.length > cur.bytes) {
      throw new TensorStreamError(`tensor "${cur.name}": ${offset + chunk.data.length} bytes sent, shape holds ${cur.bytes}`);
    }
    if (chunk.data.length === 0 && cur.bytes !== 0) {
      throw new TensorStreamError(`tensor "${cur.name}": empty chunk at byte ${offset}`);
    }
    if (!cur.sparse && chunk.indices.length > 0) throw new TensorStreamError(`tensor "${cur.name}": indices on a dense tensor`);
    const nonFinite = cur.sparse ? this.#scatter(cur, chunk, size) : decodeElements(chunk.data, cur.dtype, cur.into, offset / size);
    if (nonFinite > 0 && !this.#allowNonFinite) {
      throw new TensorStreamError(`tensor "${cur.name}": ${nonFinite} NaN or infinite value(s) near element ${offset / size}`);
    }
    cur.nextByte += chunk.data.length;
    if (cur.nextByte === cur.bytes) {
      this.#received.add(cur.name);
      this.#current = undefined;
    }
  }

  /** Decodes a sparse chunk's values and writes each to its index; returns the non-finite count. */
  #scatter(cur: { name: string; dtype: Dtype; into: Float32Array }, chunk: TensorChunk, size: number): number {
    const count = chunk.data.length / size;
    if (chunk.indices.length !== count * 4) {
      throw new TensorStreamError(`sparse tensor "${cur.name}": ${chunk.indices.length / 4} indices for ${count} values in one chunk`);
    }
    const values = new Float32Array(count);
    const nonFinite = decodeElements(chunk.data, cur.dtype, values, 0);
    const indices = new DataView(chunk.indices.buffer, chunk.indices.byteOffset, chunk.indices.length);
    for (let i = 0; i < count; i++) {
      const at = indices.getUint32(i * 4, true);
      if (at >= cur.into.length) throw new TensorStreamError(`sparse tensor "${cur.name}": index ${at} outside its ${cur.into.length} elements`);
      cur.into[at] = values[i]!;
    }
    return nonFinite;
  }

  /** Checks that the stream ended on a tensor boundary with exactly `expectedCount` tensors. */
  finish(expectedCount: number): void {
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

  finish(expectedCount: number): NamedTensor[] {
    this.#assembler.finish(expectedCount);
    return this.tensors;
  }
}
