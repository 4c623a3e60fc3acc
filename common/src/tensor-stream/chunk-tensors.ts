/**
 * Cutting named tensors into TensorChunk messages, and how big those may be.
 *
 * Rules of a tensor stream (both directions): the tensors follow one another; the chunks of one
 * tensor arrive in order without gaps; the first chunk of a tensor (byte_offset 0) carries its shape
 * and dtype; every chunk repeats the name. The receiver (tensor-assembler.ts) checks all of it.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Dtype, TensorChunkSchema, type TensorChunk } from "../gen/paramserver/v1/parameter_server_pb.js";
import { bytesPerElement, encodeElements } from "../dtype.ts";
import { elementCount, isSparse, type NamedTensor, type SparseTensor } from "../named-tensor.ts";
import { TensorStreamError } from "./tensor-stream-error.ts";

/** Default chunk payload: 1 MiB keeps messages small and HTTP/2 frames full. */
export const DEFAULT_CHUNK_BYTES = 1 << 20;

/** What a chunk message holds besides its payload (name, shape, offset, tags, gRPC framing) is
 *  kept under this: a payload of a message limit minus this fits the limit. */
export const MESSAGE_RESERVE_BYTES = 16 << 10;

/** The smallest PullParametersRequest.max_message_bytes a server accepts. */
export const MIN_MESSAGE_BYTES = 2 * MESSAGE_RESERVE_BYTES;

/**
 * The payload bytes of a pull's chunks: the server's bound, lowered to fit the client's largest
 * message (`maxMessageBytes`, 0 for no limit of its own) and to a multiple of 8 (whole elements of
 * every dtype, sparse pairs included).
 */
export function pullChunkBytes(maxChunkBytes: number, maxMessageBytes: number): number {
  if (maxMessageBytes !== 0 && maxMessageBytes < MIN_MESSAGE_BYTES) {
    throw new RangeError(`max_message_bytes ${maxMessageBytes} is too small: 0 (the server's chunk size) or at least ${MIN_MESSAGE_BYTES}`);
  }
  const bound = maxMessageBytes === 0 ? maxChunkBytes : Math.min(maxChunkBytes, maxMessageBytes - MESSAGE_RESERVE_BYTES);
  return Math.max(8, bound - (bound % 8));
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
  for (const t of tensors) {
    const sparse = isSparse(t);
    const values = sparse ? t.values : t.data;
    const n = values.length;
    if (sparse && t.indices.length !== n) throw new TensorStreamError(`sparse tensor "${t.name}" has ${t.indices.length} indices for ${n} values`);
    if (!sparse && n !== elementCount(t.shape)) throw new TensorStreamError(`tensor "${t.name}" has ${n} elements but shape [${t.shape}]`);
    // A sparse tensor's indices (4 bytes each) count towards the chunk size.
    const perChunk = Math.max(1, Math.floor(chunkBytes / (sparse ? size + 4 : size)));
    let from = 0;
    do {
      const to = Math.min(n, from + perChunk);
      const chunk: MessageInitShape<typeof TensorChunkSchema> = {
        name: t.name,
        byteOffset: BigInt(from * size),
        data: encodeElements(values, from, to, dtype),
      };
      if (sparse) chunk.indices = new Uint8Array(t.indices.buffer, t.indices.byteOffset + from * 4, (to - from) * 4);
      if (from === 0) {
        chunk.shape = [...t.shape];
        chunk.dtype = dtype;
        if (sparse) {
          chunk.sparse = true;
          chunk.sparseCount = n;
        }
      }
      yield create(TensorChunkSchema, chunk);
      from = to;
    } while (from < n);
  }
}
