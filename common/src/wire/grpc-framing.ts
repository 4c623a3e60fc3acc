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

/** The message in a unary body, without its 5-byte gRPC envelope; throws a description of what is wrong. */
export function unwrapEnvelope(body: Buffer): Uint8Array {
  if (body.length < 5) throw new Error("body shorter than a gRPC envelope");
  if (body[0] !== 0) throw new Error("compressed or unknown envelope flags");
  const length = body.readUInt32BE(1);
  if (body.length !== 5 + length) throw new Error(`envelope announces ${length} bytes, body has ${body.length - 5}`);
  return body.subarray(5);
}

/**
 * The chunks of one tensor as [prefix, data] pairs. The prefix holds the gRPC envelope and the
 * protobuf framing of a message whose field 2 is a TensorChunk{name, shape, dtype, byte_offset,
 * data} — PullParametersResponse.chunk and PushGradientsRequest.chunk alike — up to the data's
 * bytes, which follow as they are (a view for float32). 16-bit encodings go into fresh arrays, or
 * into what `wireBytes(n)` hands out (n bytes, 2-byte aligned) for a sender that reuses them.
 */
export function* frameTensorChunks(
  t: NamedTensor,
  dtype: Dtype,
  chunkBytes: number,
  wireBytes?: (n: number) => Uint8Array,
): Generator<[Buffer, Uint8Array]> {
  // Field 2: the message's `chunk`.
  for (const [field, data] of tensorChunkFields(t, 2, dtype, chunkBytes, wireBytes)) {
    yield [Buffer.concat([envelopePrefix(field.length + data.length), field]), data];
  }
}

/**
 * The chunks of one tensor as fields numbered `fieldNumber` of an enclosing message, each a
 * TensorChunk, as [prefix, data] pairs: the prefix is the field's framing up to the data's bytes,
 * which follow as they are. frameTensorChunks puts each in a message of its own; a message with a
 * repeated TensorChunk field (PushGradientsResponse.parameters) is these pairs one after another.
 */
export function* tensorChunkFields(
  t: NamedTensor,
  fieldNumber: number,
  dtype: Dtype,
  chunkBytes: number,
  wireBytes?: (n: number) => Uint8Array,
): Generator<[Buffer, Uint8Array]> {
  const size = bytesPerElement(dtype);
  const perChunk = Math.max(1, Math.floor(chunkBytes / size));
  const name = Buffer.from(t.name, "utf8");
  const n = t.data.length;
  let from = 0;
  do {
    const to = Math.min(n, from + perChunk);
    const data =
      wireBytes === undefined || dtype === Dtype.FLOAT32
        ? encodeElements(t.data, from, to, dtype)
        : encodeHalvesInto(t.data, from, to, dtype, wireBytes((to - from) * size));
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
    w.tag(5, 2).varint(data.length); // data, payload follows
    const inner = w.finish();
    const outer = new Writer().tag(fieldNumber, 2).varint(inner.length + data.length).finish();
    yield [Buffer.concat([outer, inner]), data];
    from = to;
  } while (from < n);
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
