/**
 * Turns a push read as it streams in (common/src/tensor-message-reader.ts) back into the
 * PushGradientsRequest messages the service's pushGradients consumes — without assembling each
 * ~1 MiB chunk: every socket piece of a chunk's data becomes a TensorChunk of its own (a view of
 * the socket buffer, at the right byte offset), so the bytes are copied once, by the service, into
 * the gradient it keeps encoded until its step (received-gradient.ts). The service checks these
 * chunks exactly as it checks whole ones: a stream may cut a tensor into chunks anywhere between
 * elements.
 *
 * Pieces may split an element; its bytes are carried into a small chunk of their own. A chunk
 * whose data is not a whole number of elements ends in a partial one, which the service refuses.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { bytesPerElement } from "@distributed-ps/common/dtype.ts";
import {
  Dtype,
  PushGradientsRequestSchema,
  PushHeaderSchema,
  type PushGradientsRequest,
  type TensorChunk,
} from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { FramingError, type TensorMessageSink } from "@distributed-ps/common/wire/tensor-message-reader.ts";
import { elementCount } from "@distributed-ps/common/named-tensor.ts";
import { TensorStreamError, type ChunkFraming } from "@distributed-ps/common/tensor-stream.ts";

const NO_BYTES = new Uint8Array(0);

export class PushChunkSplitter implements TensorMessageSink {
  readonly #emit: (message: PushGradientsRequest) => void;
  /** The chunk being split, and where its next piece goes. */
  #framing: ChunkFraming | undefined;
  #nextOffset = 0;
  #firstPiece = true;
  #elementSize = 1;
  /** Element size of the current tensor, from the dtype its first chunk announced. */
  #tensorElementSize = 1;
  /** The current tensor's name and bytes on the wire, as its first chunk announced them. */
  #tensorName = "";
  #tensorBytes = Number.POSITIVE_INFINITY;
  #carry = new Uint8Array(4);
  #carried = 0;

  constructor(emit: (message: PushGradientsRequest) => void) {
    this.#emit = emit;
  }

  header(bytes: Uint8Array): void {
    let header;
    try {
      header = fromBinary(PushHeaderSchema, bytes);
    } catch (err) {
      throw new FramingError(`malformed header: ${(err as Error).message}`);
    }
    this.#emit(create(PushGradientsRequestSchema, { message: { case: "header", value: header } }));
  }

  beginChunk(framing: ChunkFraming, dataLength: number): void {
    this.#framing = framing;
    this.#nextOffset = Number(framing.byteOffset);
    this.#firstPiece = true;
    if (this.#nextOffset === 0) {
      this.#tensorName = framing.name;
      // An unsupported dtype or shape is the service's to refuse; until then, any cut will do.
      try {
        this.#tensorElementSize = bytesPerElement(framing.dtype);
        this.#tensorBytes = elementCount(framing.shape) * this.#tensorElementSize;
      } catch {
        this.#tensorElementSize = 1;
        this.#tensorBytes = Number.POSITIVE_INFINITY;
      }
    }
    // Split, a chunk that runs past its tensor would look like the start of another one; refuse it
    // as the service refuses it whole.
    if (framing.name === this.#tensorName && this.#nextOffset + dataLength > this.#tensorBytes) {
      throw new TensorStreamError(`tensor "${framing.name}": ${this.#nextOffset + dataLength} bytes sent, shape holds ${this.#tensorBytes}`);
    }
    this.#elementSize = this.#tensorElementSize;
    this.#carried = 0;
    if (dataLength === 0) this.#chunk(new Uint8Array(0));
  }

  writeData(piece: Uint8Array): void {
    const size = this.#elementSize;
    let from = 0;
    if (this.#carried > 0) {
      from = Math.min(size - this.#carried, piece.length);
      this.#carry.set(piece.subarray(0, from), this.#carried);
      this.#carried += from;
      if (this.#carried < size) return;
      this.#chunk(this.#carry.slice(0, size));
      this.#carried = 0;
    }
    const whole = from + Math.floor((piece.length - from) / size) * size;
    if (whole > from) this.#chunk(piece.subarray(from, whole));
    if (whole < piece.length) {
      this.#carry.set(piece.subarray(whole), 0);
      this.#carried = piece.length - whole;
    }
  }

  endChunk(): void {
    if (this.#carried > 0) this.#chunk(this.#carry.slice(0, this.#carried)); // a partial element: refused downstream
    this.#carried = 0;
    this.#framing = undefined;
  }

  #chunk(data: Uint8Array): void {
    const f = this.#framing!;
    const first = this.#firstPiece;
    this.#firstPiece = false;
    // The chunk's own fields go on its first piece; later pieces leave the dtype unspecified, which
    // means "as before" mid-tensor.
    // Literals, not create(): one message per socket piece (~1,700 per 22 MB push), and create()
    // walks the schema for every one of them. The types still require every field.
    const value: TensorChunk = {
      $typeName: "paramserver.v1.TensorChunk",
      name: f.name,
      shape: first ? f.shape : [],
      dtype: first ? f.dtype : Dtype.UNSPECIFIED,
      byteOffset: BigInt(this.#nextOffset),
      data,
      sparse: false,
      sparseCount: 0,
      indices: NO_BYTES,
    };
    this.#emit({ $typeName: "paramserver.v1.PushGradientsRequest", message: { case: "chunk", value } });
    this.#nextOffset += data.length;
  }
}
