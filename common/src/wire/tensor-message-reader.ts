/**
 * Reads a stream of gRPC-enveloped messages that carry TensorChunks — `oneof message { Header
 * header = 1; TensorChunk chunk = 2; }` (PullParametersResponse, a pull's answer, and
 * PushGradientsRequest, a push's body) or a message with a `repeated TensorChunk` field and scalars
 * (PushGradientsResponse with the parameters, a push's answer; see MessageLayout) — as it arrives
 * from the socket, without assembling messages: the small fields of
 * each TensorChunk are parsed from the bytes at hand, and its data is handed to the sink as views
 * of the socket buffers it arrived in (one copy, into the receiving tensors; nothing to collect).
 *
 * Why: through the generic Connect code each ~1 MiB chunk is concatenated from its 16 KiB frames
 * into a fresh buffer, parsed into a message and then copied again, and the garbage of that was
 * the largest cost of a worker's step.
 *
 * Any valid protobuf encoding of the messages is read as protobuf-es reads it: fields in any order
 * (data before the name too), a repeated scalar or bytes field's last value, packed or unpacked
 * shapes, unknown fields skipped, dense and sparse chunks. A chunk's fields are final only at its
 * end; since its length is known, so is whether anything follows its data. When nothing does — a
 * dense chunk as every serializer writes it — the data streams into the sink as it arrives;
 * otherwise the chunk is delivered at its end, its data held meanwhile as the socket buffers it
 * came in (at most one message, which `maxMessageBytes` bounds). Holding is not free (held for every
 * chunk, they slowed the pull measurably), so the common case avoids it.
 * One thing protobuf allows is refused: a message that repeats its `header` field, or a oneof's
 * `chunk` field (which a parser would merge), something no serializer writes. What the chunks carry
 * (names, offsets in order, sizes, dtypes, values) is for the sink to check.
 */
import { Dtype } from "../gen/paramserver/v1/parameter_server_pb.js";
import type { ChunkFraming } from "../tensor-stream/tensor-assembler.ts";

/** A body that is not a valid stream of such messages (as opposed to a valid one with bad tensors). */
export class FramingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FramingError";
  }
}

/** A message over the size limit (Connect reports those as ResourceExhausted). */
export class MessageTooLargeError extends FramingError {
  constructor(message: string) {
    super(message);
    this.name = "MessageTooLargeError";
  }
}

/** Where a message keeps its parts. */
export interface MessageLayout {
  /** The field of the header sub-message, which must come first and once; none if undefined. */
  readonly header: number | undefined;
  /** The TensorChunk field. */
  readonly chunk: number;
  /** Whether the chunk field is `repeated` (many chunks per message) rather than part of a oneof (one). */
  readonly repeated: boolean;
}

/** PullParametersResponse and PushGradientsRequest: `oneof message { header = 1; chunk = 2; }`. */
export const HEADER_OR_CHUNK: MessageLayout = { header: 1, chunk: 2, repeated: false };

/** Where the reader delivers what it read; its exceptions end the reading. */
export interface TensorMessageSink {
  /** The header message (MessageLayout.header), whole; it comes first and once. */
  header?(bytes: Uint8Array): void;
  /**
   * A varint field of the message itself (not of a chunk), as read: how the scalars of a layout
   * without a header arrive. Without this method they are skipped as unknown fields are.
   */
  scalar?(field: number, value: number): void;
  /**
   * A TensorChunk whose data field is its last: its fields, then its `dataLength` bytes of data
   * through writeData() as they arrive (views of the socket buffers; pieces may split elements),
   * then endChunk(). This is how serializers write dense chunks, and it holds nothing.
   */
  beginChunk(framing: ChunkFraming, dataLength: number): void;
  writeData(piece: Uint8Array): void;
  endChunk(): void;
  /**
   * A TensorChunk with fields after its data (a sparse one, as serializers write it), delivered at
   * its end: its fields and its data as views of the socket buffers it arrived in, in order.
   */
  chunk(framing: ChunkFraming, data: readonly Uint8Array[], dataLength: number): void;
}

/** Bound on any field the reader must hold whole (header, name, packed shape): far above real ones. */
const MAX_SMALL_FIELD_BYTES = 64 << 10;

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH = 2;
const WIRE_FIXED32 = 5;

// What the reader is in the middle of.
const AT_ENVELOPE = 0; // before a message's 5-byte envelope
const IN_MESSAGE = 1; // between the fields of a message
const IN_CHUNK = 2; // between the fields of its TensorChunk
const IN_PAYLOAD = 3; // in the payload of the chunk's data or indices field
const SKIPPING = 4; // in an unknown field's bytes
const IN_SMALL_FIELD = 5; // waiting for the whole of a short length-delimited field

/** The fields of the TensorChunk being read, so far. */
interface ChunkFields {
  name: string;
  shape: number[];
  dtype: Dtype;
  byteOffset: bigint;
  sparse: boolean;
  sparseCount: number;
  /** The data and indices fields' payloads, as views of the socket buffers. */
  data: Payload;
  indices: Payload;
}

interface Payload {
  readonly pieces: readonly Uint8Array[];
  readonly length: number;
}

/** A field's key (and, for varint and length-delimited fields, its value or length), as read. */
interface FieldKey {
  field: number;
  wireType: number;
  /** The varint value (WIRE_VARINT) or the payload length (WIRE_LENGTH); 0 otherwise. */
  value: number;
  /** Bytes the key and value/length took. */
  bytes: number;
}

export class TensorMessageReader {
  readonly #sink: TensorMessageSink;
  readonly #layout: MessageLayout;
  readonly #maxMessageBytes: number;
  /** What the stream is, for messages: "pull answer", "push". */
  readonly #what: string;

  // Bytes received and not yet consumed: #queue[0] from #headOffset on, then the others whole.
  readonly #queue: Buffer[] = [];
  #headOffset = 0;
  #queued = 0;

  #state = AT_ENVELOPE;
  /** Bytes left in the current message, chunk field, data payload, skipped field. */
  #messageLeft = 0;
  #chunkLeft = 0;
  #payloadLeft = 0;
  #skipLeft = 0;
  /** Where the payload being read goes (IN_PAYLOAD): held, or (#streaming) straight to the sink. */
  #payloadPieces: Uint8Array[] = [];
  /** Whether the current chunk's data streams into the sink (nothing follows it in the chunk). */
  #streaming = false;
  /** After SKIPPING or IN_SMALL_FIELD: where to return. */
  #resume = AT_ENVELOPE;
  #smallField: { field: number; length: number; inChunk: boolean } | undefined;
  /** The field key #readKey read last. */
  readonly #key: FieldKey = { field: 0, wireType: 0, value: 0, bytes: 0 };
  #chunk: ChunkFields | undefined;
  #messages = 0;
  #headerSeen = false;
  /** Whether the current message had its chunk field (a second one would have to be merged into it). */
  #chunkInMessage = false;

  /** Refuses messages over `maxMessageBytes`, as Connect does. */
  constructor(sink: TensorMessageSink, maxMessageBytes: number, what: string, layout: MessageLayout = HEADER_OR_CHUNK) {
    this.#sink = sink;
    this.#layout = layout;
    this.#maxMessageBytes = maxMessageBytes;
    this.#what = what;
  }

  /** Takes the next bytes of the body; throws FramingError or TensorStreamError on a bad stream. */
  push(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.#queue.push(bytes);
    this.#queued += bytes.length;
    this.#process();
  }

  /** The body ended: checks that it ended on a message boundary, after a header. */
  finish(): void {
    if (this.#state !== AT_ENVELOPE || this.#queued > 0) {
      throw new FramingError(`${this.#what} ended inside message ${this.#messages + (this.#state === AT_ENVELOPE ? 1 : 0)}`);
    }
    if (this.#layout.header !== undefined && !this.#headerSeen) throw new FramingError(`${this.#what} ended without a header`);
    if (this.#messages === 0) throw new FramingError(`${this.#what} ended without a message`);
  }

  #process(): void {
    for (;;) {
      switch (this.#state) {
        case AT_ENVELOPE: {
          const envelope = this.#peek(5);
          if (envelope === undefined) return;
          if (envelope[0] !== 0) throw new FramingError(`message ${this.#messages + 1}: compressed or unknown envelope flags ${envelope[0]}`);
          const length = ((envelope[1]! << 24) >>> 0) + (envelope[2]! << 16) + (envelope[3]! << 8) + envelope[4]!;
          if (length > this.#maxMessageBytes) {
            throw new MessageTooLargeError(`message ${this.#messages + 1} of ${length} bytes is larger than the limit of ${this.#maxMessageBytes}`);
          }
          this.#consume(5);
          this.#messages++;
          this.#chunkInMessage = false;
          this.#messageLeft = length;
          this.#state = IN_MESSAGE;
          break;
        }
        case IN_MESSAGE: {
          if (this.#messageLeft === 0) {
            this.#state = AT_ENVELOPE;
            break;
          }
          const key = this.#readKey(this.#messageLeft, "message");
          if (key === undefined) return;
          this.#consume(key.bytes);
          this.#messageLeft -= key.bytes;
          const layout = this.#layout;
          if (key.field === layout.header && key.wireType === WIRE_LENGTH) {
            this.#expectSmallField(key, false, IN_MESSAGE);
          } else if (key.field === layout.chunk && key.wireType === WIRE_LENGTH) {
            if (layout.header !== undefined && !this.#headerSeen) throw new FramingError(`message ${this.#messages}: a chunk before the header`);
            if (this.#chunkInMessage && !layout.repeated) throw new FramingError(`message ${this.#messages}: two chunks in one message`);
            this.#chunkInMessage = true;
            this.#messageLeft -= key.value;
            this.#chunkLeft = key.value;
            this.#chunk = {
              name: "",
              shape: [],
              dtype: Dtype.UNSPECIFIED,
              byteOffset: 0n,
              sparse: false,
              sparseCount: 0,
              data: NO_PAYLOAD,
              indices: NO_PAYLOAD,
            };
            this.#state = IN_CHUNK;
          } else if (key.field === layout.header || key.field === layout.chunk) {
            throw new FramingError(`message ${this.#messages}: field ${key.field} has wire type ${key.wireType}`);
          } else if (key.wireType === WIRE_VARINT && this.#sink.scalar !== undefined) {
            this.#sink.scalar(key.field, key.value);
          } else {
            this.#skip(key, "message", IN_MESSAGE);
          }
          break;
        }
        case IN_CHUNK: {
          if (this.#chunkLeft === 0) {
            this.#endChunk();
            this.#state = IN_MESSAGE;
            break;
          }
          const key = this.#readKey(this.#chunkLeft, "TensorChunk");
          if (key === undefined) return;
          this.#consume(key.bytes);
          this.#chunkLeft -= key.bytes;
          this.#chunkField(key);
          break;
        }
        case IN_PAYLOAD: {
          const pieces = this.#payloadPieces;
          while (this.#payloadLeft > 0 && this.#queued > 0) {
            const head = this.#queue[0]!;
            const n = Math.min(head.length - this.#headOffset, this.#payloadLeft);
            const piece = head.subarray(this.#headOffset, this.#headOffset + n);
            if (this.#streaming) this.#sink.writeData(piece);
            else pieces.push(piece);
            this.#consume(n);
            this.#payloadLeft -= n;
          }
          if (this.#payloadLeft > 0) return;
          this.#state = IN_CHUNK;
          break;
        }
        case SKIPPING: {
          const n = Math.min(this.#queued, this.#skipLeft);
          this.#consume(n);
          this.#skipLeft -= n;
          if (this.#skipLeft > 0) return;
          this.#state = this.#resume;
          break;
        }
        case IN_SMALL_FIELD: {
          const f = this.#smallField!;
          const bytes = this.#peek(f.length);
          if (bytes === undefined) return;
          if (f.inChunk) {
            this.#chunkBytesField(f.field, bytes);
          } else {
            if (this.#headerSeen) throw new FramingError(`message ${this.#messages}: a second header`);
            this.#headerSeen = true;
            this.#sink.header?.(bytes);
          }
          this.#consume(f.length);
          this.#smallField = undefined;
          this.#state = this.#resume;
          break;
        }
      }
    }
  }

  /** A TensorChunk field whose key (and varint value or length) has been consumed. */
  #chunkField(key: FieldKey): void {
    const chunk = this.#chunk!;
    switch (key.field) {
      case 1: // name
        this.#expectWireType(key, WIRE_LENGTH);
        this.#expectSmallField(key, true, IN_CHUNK);
        return;
      case 2: // shape: packed, or one unpacked element
        if (key.wireType === WIRE_VARINT) chunk.shape.push(key.value);
        else if (key.wireType === WIRE_LENGTH) this.#expectSmallField(key, true, IN_CHUNK);
        else this.#expectWireType(key, WIRE_LENGTH);
        return;
      case 3:
        this.#expectWireType(key, WIRE_VARINT);
        chunk.dtype = key.value as Dtype;
        return;
      case 4:
        this.#expectWireType(key, WIRE_VARINT);
        chunk.byteOffset = BigInt(key.value);
        return;
      case 5: // data
        this.#expectWireType(key, WIRE_LENGTH);
        chunk.data = this.#expectPayload(key);
        if (this.#chunkLeft === 0) {
          // The chunk's last field: its other fields are final, so its data can go as it arrives.
          this.#streaming = true;
          this.#sink.beginChunk(this.#framing(chunk), key.value);
        }
        return;
      case 6:
        this.#expectWireType(key, WIRE_VARINT);
        chunk.sparse = key.value !== 0;
        return;
      case 7:
        this.#expectWireType(key, WIRE_VARINT);
        chunk.sparseCount = key.value;
        return;
      case 8: // indices
        this.#expectWireType(key, WIRE_LENGTH);
        chunk.indices = this.#expectPayload(key);
        return;
      default:
        this.#skip(key, "chunk", IN_CHUNK);
    }
  }

  #expectWireType(key: FieldKey, expected: number): void {
    if (key.wireType !== expected) throw new FramingError(`message ${this.#messages}: TensorChunk field ${key.field} has wire type ${key.wireType}`);
  }

  /** The payload of a data or indices field, read next; a repeated field's last value is the one that counts. */
  #expectPayload(key: FieldKey): Payload {
    const pieces: Uint8Array[] = [];
    this.#chunkLeft -= key.value;
    this.#payloadLeft = key.value;
    this.#payloadPieces = pieces;
    this.#state = IN_PAYLOAD;
    return { pieces, length: key.value };
  }

  /** The name or packed shape of the current chunk, whole. */
  #chunkBytesField(field: number, bytes: Uint8Array): void {
    const chunk = this.#chunk!;
    if (field === 1) {
      chunk.name = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("utf8");
      return;
    }
    // A packed shape, appended to what came before (as protobuf merges repeated fields).
    for (let at = 0; at < bytes.length; ) {
      const length = readVarint(bytes, at, bytes.length);
      if (length === 0) throw new FramingError(`message ${this.#messages}: truncated packed shape`);
      chunk.shape.push(varintValue);
      at += length;
    }
  }

  #endChunk(): void {
    const c = this.#chunk!;
    this.#chunk = undefined;
    if (this.#streaming) {
      this.#streaming = false;
      this.#sink.endChunk();
    } else {
      this.#sink.chunk(this.#framing(c), c.data.pieces, c.data.length);
    }
  }

  #framing(c: ChunkFields): ChunkFraming {
    const indices = c.indices.pieces.length === 1 ? c.indices.pieces[0]! : Buffer.concat(c.indices.pieces, c.indices.length);
    return { name: c.name, shape: c.shape, dtype: c.dtype, byteOffset: c.byteOffset, sparse: c.sparse, sparseCount: c.sparseCount, indices };
  }

  #expectSmallField(key: FieldKey, inChunk: boolean, resume: number): void {
    if (key.value > MAX_SMALL_FIELD_BYTES) {
      throw new FramingError(`message ${this.#messages}: field ${key.field} of ${key.value} bytes (at most ${MAX_SMALL_FIELD_BYTES} expected)`);
    }
    if (inChunk) this.#chunkLeft -= key.value;
    else this.#messageLeft -= key.value;
    this.#smallField = { field: key.field, length: key.value, inChunk };
    this.#resume = resume;
    this.#state = IN_SMALL_FIELD;
  }

  /** Skips an unknown field's payload (a varint's value was read with its key). */
  #skip(key: FieldKey, where: "message" | "chunk", resume: number): void {
    let length: number;
    if (key.wireType === WIRE_VARINT) length = 0;
    else if (key.wireType === WIRE_LENGTH) length = key.value;
    else if (key.wireType === WIRE_FIXED64) length = 8;
    else if (key.wireType === WIRE_FIXED32) length = 4;
    else throw new FramingError(`message ${this.#messages}: field ${key.field} has unsupported wire type ${key.wireType}`);
    if (where === "chunk") {
      if (length > this.#chunkLeft) throw new FramingError(`message ${this.#messages}: TensorChunk field ${key.field} runs past the chunk`);
      this.#chunkLeft -= length;
    } else {
      if (length > this.#messageLeft) throw new FramingError(`message ${this.#messages}: field ${key.field} runs past the message`);
      this.#messageLeft -= length;
    }
    this.#skipLeft = length;
    this.#resume = resume;
    this.#state = SKIPPING;
  }

  /**
   * The next field's key and, for varint and length-delimited fields, its value or length, if all of
   * it has arrived; within `limit` bytes (what is left of the enclosing message), else an error.
   * The key is the reader's one FieldKey, valid until the next call: a small model's call reads
   * dozens of keys, and an object for each was a measurable share of what the collector cleaned.
   */
  #readKey(limit: number, what: string): FieldKey | undefined {
    const want = Math.min(limit, 20, this.#queued);
    if (want === 0) return undefined;
    // Read in place when the bytes are in the first buffer (nearly always), else from a copy.
    const head = this.#queue[0]!;
    let bytes: Uint8Array = head;
    let at = this.#headOffset;
    if (head.length - at < want) {
      bytes = this.#peek(want)!;
      at = 0;
    }
    const end = at + want;
    const complete = want === limit; // nothing beyond these bytes belongs to the message
    const tagBytes = readVarint(bytes, at, end);
    if (tagBytes === 0) return this.#incomplete(complete, what);
    const tag = varintValue;
    const key = this.#key;
    key.field = Math.floor(tag / 8);
    key.wireType = tag % 8;
    key.value = 0;
    key.bytes = tagBytes;
    if (key.field === 0) throw new FramingError(`message ${this.#messages}: ${what} has a field numbered 0`);
    if (key.wireType !== WIRE_VARINT && key.wireType !== WIRE_LENGTH) return key;
    const valueBytes = readVarint(bytes, at + tagBytes, end);
    if (valueBytes === 0) return this.#incomplete(complete, what);
    key.value = varintValue;
    key.bytes += valueBytes;
    if (key.wireType === WIRE_LENGTH && key.value > limit - key.bytes) {
      throw new FramingError(`message ${this.#messages}: ${what} field ${key.field} of ${key.value} bytes runs past its end`);
    }
    return key;
  }

  #incomplete(complete: boolean, what: string): undefined {
    if (complete || this.#queued >= 20) throw new FramingError(`message ${this.#messages}: malformed or truncated field in ${what}`);
    return undefined;
  }

  /** The next `n` bytes as one array (a view when they sit in one buffer), or undefined until they arrived. */
  #peek(n: number): Uint8Array | undefined {
    if (this.#queued < n) return undefined;
    const head = this.#queue[0];
    if (head === undefined) return EMPTY;
    if (head.length - this.#headOffset >= n) return head.subarray(this.#headOffset, this.#headOffset + n);
    const out = new Uint8Array(n);
    let filled = 0;
    for (let i = 0, from = this.#headOffset; filled < n; i++, from = 0) {
      const b = this.#queue[i]!;
      const take = Math.min(b.length - from, n - filled);
      out.set(b.subarray(from, from + take), filled);
      filled += take;
    }
    return out;
  }

  #consume(n: number): void {
    this.#queued -= n;
    while (n > 0) {
      const head = this.#queue[0]!;
      const left = head.length - this.#headOffset;
      if (n < left) {
        this.#headOffset += n;
        return;
      }
      n -= left;
      this.#queue.shift();
      this.#headOffset = 0;
    }
  }
}

const EMPTY = new Uint8Array(0);
/** A data or indices field the chunk did not carry (an empty one is left out of the encoding). */
const NO_PAYLOAD: Payload = { pieces: [], length: 0 };

/** The value of the varint readVarint read last (module-wide: the reader is synchronous). */
let varintValue = 0;

/**
 * Reads a varint within bytes[at, end) into varintValue and returns its length in bytes, or 0 if it
 * does not end there; values above 2^53 are refused.
 */
function readVarint(bytes: Uint8Array, at: number, end: number): number {
  let value = 0;
  let scale = 1;
  for (let i = at; i < end && i - at < 10; i++) {
    const b = bytes[i]!;
    value += (b & 0x7f) * scale;
    if ((b & 0x80) === 0) {
      if (!Number.isSafeInteger(value)) throw new FramingError(`varint ${value} exceeds 2^53`);
      varintValue = value;
      return i - at + 1;
    }
    scale *= 128;
  }
  if (end - at >= 10) throw new FramingError("varint longer than 10 bytes");
  return 0;
}
