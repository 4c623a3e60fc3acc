/**
 * The safetensors file format (https://github.com/huggingface/safetensors), for checkpoints and
 * exported models: portable, readable by PyTorch/JAX/TensorFlow tooling, and — unlike pickle — pure
 * data: loading one cannot execute anything.
 *
 * Layout: an 8-byte little-endian header length N; N bytes of JSON
 * `{"__metadata__": {string: string}, "<name>": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}}`
 * padded with spaces to a multiple of 8; then the tensor bytes, offsets relative to the end of the
 * header. Only F32 is written and read here (everything this project stores is float32). The npm
 * packages for the format are unmaintained stubs, and the format is this small, so it lives here.
 */
import { createHash } from "node:crypto";
import { elementCount, type NamedTensor } from "./named-tensor.ts";

/**
 * Metadata key holding the SHA-256 (hex) of the whole object as written, with these 64 digits read
 * as zeros: the header (every tensor's name, shape and offsets, and the metadata) is covered as well
 * as the data. See verifyChecksum.
 */
export const CHECKSUM_KEY = "sha256";
/** The key of objects written before the header was covered: the SHA-256 of the data section only. */
export const DATA_CHECKSUM_KEY = "data_sha256";
const CHECKSUM_PLACEHOLDER = "0".repeat(64);

export class SafetensorsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SafetensorsError";
  }
}

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** Largest header we accept when reading: a corrupt length must not make us allocate gigabytes. */
const MAX_HEADER_BYTES = 100 << 20;

/**
 * Serialises tensors (in the given order) and string metadata into one buffer. With `checksum`,
 * the metadata also carries the SHA-256 of the whole object (see verifyChecksum).
 */
export function encodeSafetensors(
  tensors: readonly NamedTensor[],
  metadata: Record<string, string> = {},
  o: { checksum?: boolean } = {},
): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: o.checksum ? { ...metadata, [CHECKSUM_KEY]: CHECKSUM_PLACEHOLDER } : metadata };
  let offset = 0;
  for (const t of tensors) {
    if (t.name === "__metadata__" || Object.hasOwn(header, t.name)) throw new SafetensorsError(`duplicate or reserved tensor name "${t.name}"`);
    if (elementCount(t.shape) !== t.data.length) throw new SafetensorsError(`tensor "${t.name}" has ${t.data.length} elements but shape [${t.shape}]`);
    const bytes = t.data.length * 4;
    header[t.name] = { dtype: "F32", shape: [...t.shape], data_offsets: [offset, offset + bytes] } satisfies HeaderEntry;
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, "utf8");
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.length * 4), at);
    at += t.data.length * 4;
  }
  if (o.checksum) {
    // The digest covers the whole object, its own place in the header included: hash the object
    // with a fixed-width placeholder there, then put the digest where the placeholder was.
    const digest = createHash("sha256").update(out).digest("hex");
    out.set(Buffer.from(digest, "latin1"), digestOffset(out, headerBytes.length));
  }
  return out;
}

/** Where the 64 hex digits of CHECKSUM_KEY's value start in `bytes`; -1 when the header has none. */
function digestOffset(bytes: Uint8Array, headerLength: number): number {
  const label = Buffer.from(`"${CHECKSUM_KEY}":"`);
  const where = Buffer.from(bytes.buffer, bytes.byteOffset + 8, headerLength).indexOf(label);
  return where < 0 ? -1 : 8 + where + label.length;
}

/**
 * Checks the object against the digest in its metadata: the whole object (CHECKSUM_KEY), or for an
 * object written before that, its data section (DATA_CHECKSUM_KEY). Throws SafetensorsError when
 * the digest is missing or differs (a corrupt or partially written file).
 */
export function verifyChecksum(bytes: Uint8Array, decoded: DecodedSafetensors): void {
  const whole = decoded.metadata[CHECKSUM_KEY];
  if (whole !== undefined) {
    const at = digestOffset(bytes, decoded.dataOffset - 8);
    if (at < 0 || Buffer.from(bytes.subarray(at, at + 64)).toString("latin1") !== whole) {
      throw new SafetensorsError(`the ${CHECKSUM_KEY} metadata is not where it was written (the header was changed)`);
    }
    const actual = createHash("sha256")
      .update(bytes.subarray(0, at))
      .update(CHECKSUM_PLACEHOLDER, "latin1")
      .update(bytes.subarray(at + 64))
      .digest("hex");
    if (actual !== whole) throw new SafetensorsError(`checksum ${actual.slice(0, 12)}… does not match the recorded ${whole.slice(0, 12)}…`);
    return;
  }
  const expected = decoded.metadata[DATA_CHECKSUM_KEY];
  if (expected === undefined) throw new SafetensorsError(`no ${CHECKSUM_KEY} in the metadata`);
  const actual = createHash("sha256").update(bytes.subarray(decoded.dataOffset)).digest("hex");
  if (actual !== expected) throw new SafetensorsError(`data checksum ${actual.slice(0, 12)}… does not match the recorded ${expected.slice(0, 12)}…`);
}

export interface DecodedSafetensors {
  tensors: NamedTensor[];
  metadata: Record<string, string>;
  /** Where the tensor bytes start in the buffer (for checksums over the data section). */
  dataOffset: number;
}

/** Parses and validates a safetensors buffer; throws SafetensorsError saying what is wrong. */
export function decodeSafetensors(bytes: Uint8Array): DecodedSafetensors {
  if (bytes.length < 8) throw new SafetensorsError(`file is ${bytes.length} bytes, too short for a header`);
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > bytes.length) {
    throw new SafetensorsError(`header length ${headerLength} does not fit a file of ${bytes.length} bytes (truncated?)`);
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + 8, headerLength).toString("utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new SafetensorsError(`header is not valid JSON: ${(err as Error).message}`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) throw new SafetensorsError("header is not a JSON object");
  const dataOffset = 8 + headerLength;
  const dataLength = bytes.length - dataOffset;
  const metadata: Record<string, string> = {};
  const tensors: NamedTensor[] = [];
  const entries: [string, HeaderEntry][] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === "__metadata__") {
      for (const [k, v] of Object.entries((value ?? {}) as Record<string, unknown>)) {
        if (typeof v !== "string") throw new SafetensorsError(`metadata "${k}" is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const e = value as HeaderEntry;
    if (e?.dtype !== "F32") throw new SafetensorsError(`tensor "${name}" has dtype ${String(e?.dtype)}; only F32 is supported`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) throw new SafetensorsError(`tensor "${name}" has an invalid shape`);
    const [begin, end] = e.data_offsets ?? [];
    if (!Number.isInteger(begin) || !Number.isInteger(end) || begin! < 0 || end! < begin! || end! > dataLength) {
      throw new SafetensorsError(`tensor "${name}" has data offsets [${String(begin)}, ${String(end)}] outside the ${dataLength} data bytes (truncated?)`);
    }
    if (end! - begin! !== elementCount(e.shape) * 4) throw new SafetensorsError(`tensor "${name}": ${end! - begin!} bytes for shape [${e.shape}]`);
    entries.push([name, e]);
  }
  // Stored order is by offset; keep it so a round trip preserves tensor order.
  entries.sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  for (const [name, e] of entries) {
    const [begin, end] = e.data_offsets;
    const data = new Float32Array((end - begin) / 4);
    // Copy bytewise: the data section need not be 4-byte aligned within `bytes`.
    new Uint8Array(data.buffer).set(bytes.subarray(dataOffset + begin, dataOffset + end));
    tensors.push({ name, shape: e.shape, data });
  }
  return { tensors, metadata, dataOffset };
}
