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

/** Metadata key holding the SHA-256 (hex) of the data section when written with `checksum`. */
export const CHECKSUM_KEY = "data_sha256";
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
 * the metadata also carries the SHA-256 of the data section (see verifyChecksum).
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
    // The digest covers the data, which follows the header: write a fixed-width placeholder into
    // the header, hash the data, then put the digest where the placeholder was.
    const digest = createHash("sha256").update(out.subarray(8 + headerBytes.length)).digest("hex");
    const needle = Buffer.from(`"${CHECKSUM_KEY}":"${CHECKSUM_PLACEHOLDER}"`);
    const where = Buffer.from(out.buffer, out.byteOffset + 8, headerBytes.length).indexOf(needle);
    out.set(Buffer.from(`"${CHECKSUM_KEY}":"${digest}"`), 8 + where);
  }
  return out;
}

/**
 * Checks the data section against the digest in the metadata. Throws SafetensorsError when the
 * digest is missing or differs (a corrupt or partially written file).
 */
export function verifyChecksum(bytes: Uint8Array, decoded: DecodedSafetensors): void {
  const expected = decoded.metadata[CHECKSUM_KEY];
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
