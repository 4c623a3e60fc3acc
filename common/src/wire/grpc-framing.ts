/**
 * gRPC messages written by hand for the bulk tensor streams (see server/src/wire/fast-pull.ts and
 * worker/src/wire/fast-push.ts): the small framing is encoded here and the tensor bytes follow it
 * unchanged, instead of being copied through a generic protobuf writer and envelope.
 *
 * The layout is the ordinary protobuf encoding of the messages in parameter_server.proto, so any
 * gRPC peer reads it; tests compare it with what protobuf-es produces.
 */
import { bytesPerElement, encodeElements, encodeHalvesInto } from "../dtype.ts";
import { Dtype } from "../gen/paramserver/v1/parameter_server_pb.js";
import type { NamedTensor } from "../named-tensor.ts";

/** The 5-byte gRPC envelope of an uncompressed message of `length` bytes. */
export function envelopePrefix(length: number): Buffer {
  const b = Buffer.alloc(5);
  b.writeUInt32BE(length, 1);
  return b;
}

/**
 * The chunks of one tensor as [prefix, data] pairs. The prefix holds the gRPC envelope and the
 * protobuf framing of a message whose field 2 is a TensorChunk{name, shape, dtype, byte_offset,
 * data} — PullParametersResponse.chunk and PushGradientsRequest.chunk alike — up to the data's
 * bytes, which follow as they are (a view for float32). 16-bit encodings go into fresh arrays, or
 * into what `wireBytes(n)` hands out (n bytes, 2-byte aligned) for a sender that reuses them.
 * With `framings` (ChunkFramings.messages()), prefixes made for earlier messages are reused.
 */
export function* frameTensorChunks(
  t: NamedTensor,
  dtype: Dtype,
  chunkBytes: number,
  wireBytes?: (n: number) => Uint8Array,
  framings?: ChunkFramings,
): Generator<[Buffer, Uint8Array]> {
  if (framings?.enveloped === false) throw new TypeError("frameTensorChunks: these framings are of fields, not messages");
  yield* tensorChunkFields(t, framings ?? ChunkFramings.messages(), dtype, chunkBytes, wireBytes);
}

/**
 * The chunks of one tensor as fields of an enclosing message (`framings`: ChunkFramings.fields),
 * each a TensorChunk, as [prefix, data] pairs: the prefix is the field's framing up to the data's
 * bytes, which follow as they are. frameTensorChunks puts each in a message of its own (these pairs
 * with ChunkFramings.messages()); a message with a repeated TensorChunk field
 * (PushGradientsResponse.parameters) is these pairs one after another.
 */
export function* tensorChunkFields(
  t: NamedTensor,
  framings: ChunkFramings,
  dtype: Dtype,
  chunkBytes: number,
  wireBytes?: (n: number) => Uint8Array,
): Generator<[Buffer, Uint8Array]> {
  for (const { from, to, prefix } of framings.of(t, dtype, chunkBytes)) yield [prefix, chunkData(t, from, to, dtype, wireBytes)];
}

/** One chunk of a tensor: its elements [from, to) and the framing that goes before their bytes. */
interface ChunkPlan {
  readonly from: number;
  readonly to: number;
  readonly prefix: Buffer;
}

/**
 * How chunks are framed — as messages of their own (frameTensorChunks) or as the fields of one
 * message (tensorChunkFields) — and the prefixes made so far, kept per tensor name and dtype while
 * the chunk size and the shape stay the same: a worker pushes the same tensors every step, a server
 * answers with the same parameters version after version, and writing their framing anew each
 * time was most of the garbage a small model's call left (a few allocations per field).
 */
export class ChunkFramings {
  readonly #field: number;
  /** Whether each chunk is a message of its own, in its gRPC envelope. */
  readonly enveloped: boolean;
  /** Per dtype and tensor name, the newest plan: a chunk size or shape that changes replaces it, so
   *  a client that asks for ever other chunk sizes (a pull's max_message_bytes) cannot grow this. */
  readonly #plans = new Map<string, { chunkBytes: number; shape: readonly number[]; elements: number; plan: readonly ChunkPlan[] }>();

  private constructor(field: number, enveloped: boolean) {
    this.#field = field;
    this.enveloped = enveloped;
  }

  /** Each chunk a message whose field 2 it is: PullParametersResponse.chunk, PushGradientsRequest.chunk. */
  static messages(): ChunkFramings {
    return new ChunkFramings(2, true);
  }

  /** Each chunk a `fieldNumber` field of one enclosing message (PushGradientsResponse.parameters). */
  static fields(fieldNumber: number): ChunkFramings {
    return new ChunkFramings(fieldNumber, false);
  }

  of(t: NamedTensor, dtype: Dtype, chunkBytes: number): readonly ChunkPlan[] {
    const key = `${dtype} ${t.name}`;
    const kept = this.#plans.get(key);
    if (kept !== undefined && kept.chunkBytes === chunkBytes && kept.elements === t.data.length && sameShape(kept.shape, t.shape)) return kept.plan;
    const plan = planChunks(t, this.#field, dtype, chunkBytes, this.enveloped);
    this.#plans.set(key, { chunkBytes, shape: [...t.shape], elements: t.data.length, plan });
    return plan;
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** The chunks of `t` and their prefixes: each chunk's field framing, in an envelope of its own when `enveloped`. */
function planChunks(t: NamedTensor, fieldNumber: number, dtype: Dtype, chunkBytes: number, enveloped: boolean): ChunkPlan[] {
  const size = bytesPerElement(dtype);
  const perChunk = Math.max(1, Math.floor(chunkBytes / size));
  const name = Buffer.from(t.name, "utf8");
  const n = t.data.length;
  const plan: ChunkPlan[] = [];
  let from = 0;
  do {
    const to = Math.min(n, from + perChunk);
    const dataLength = (to - from) * size;
    const w = new Writer();
    // TensorChunk, without the data field's payload.
    w.tag(1, 2).varint(name.length).bytes(name); // name
    if (from === 0) {
      const shape = new Writer();
      for (const d of t.shape) shape.varint(d);
      if (t.shape.length > 0) w.tag(2, 2).varint(shape.length).bytes(shape.finish()); // packed shape
      w.tag(3, 0).varint(dtype); // dtype
    }
    if (from > 0) w.tag(4, 0).varint(from * size); // byte_offset
    w.tag(5, 2).varint(dataLength); // data, payload follows
    const inner = w.finish();
    const outer = new Writer().tag(fieldNumber, 2).varint(inner.length + dataLength).finish();
    const field = Buffer.concat([outer, inner]);
    plan.push({ from, to, prefix: enveloped ? Buffer.concat([envelopePrefix(field.length + dataLength), field]) : field });
    from = to;
  } while (from < n);
  return plan;
}

/** The bytes of t.data[from, to) as `dtype`: a view for float32, else encoded (into `wireBytes` if given). */
function chunkData(t: NamedTensor, from: number, to: number, dtype: Dtype, wireBytes: ((n: number) => Uint8Array) | undefined): Uint8Array {
  return wireBytes === undefined || dtype === Dtype.FLOAT32
    ? encodeElements(t.data, from, to, dtype)
    : encodeHalvesInto(t.data, from, to, dtype, wireBytes((to - from) * bytesPerElement(dtype)));
}

/** Just enough of a protobuf writer for the framing above. */
class Writer {
  readonly #bytes: number[] = [];
  readonly #parts: Uint8Array[] = [];

  get length(): number {
    return this.#parts.reduce((n, p) => n + p.length, 0) + this.#bytes.length;
  }

  tag(field: number, wireType: number): this {
    return this.varint((field << 3) | wireType);
  }

  varint(value: number): this {
    let v = value;
    while (v >= 0x80) {
      this.#bytes.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.#bytes.push(v);
    return this;
  }

  bytes(b: Uint8Array): this {
    this.#flush();
    this.#parts.push(b);
    return this;
  }

  finish(): Buffer {
    this.#flush();
    return Buffer.concat(this.#parts);
  }

  #flush(): void {
    if (this.#bytes.length > 0) this.#parts.push(Uint8Array.from(this.#bytes.splice(0)));
  }
}
