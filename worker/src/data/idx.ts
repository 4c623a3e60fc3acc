/**
 * The IDX file format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/): a big-endian
 * header — two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions — then one
 * 32-bit big-endian size per dimension, then the values in row-major order. The published files are
 * gzip-compressed; parseIdx accepts either.
 */
import { gunzipSync } from "node:zlib";

export interface IdxArray {
  /** Sizes, outermost first: [count] for labels, [count, rows, cols] for images. */
  readonly dims: readonly number[];
  readonly data: Uint8Array;
}

const UNSIGNED_BYTE = 0x08;

/** Parses an IDX file of unsigned bytes (gzip-compressed or not). `what` names it in errors. */
export function parseIdx(bytes: Uint8Array, what: string): IdxArray {
  const raw = isGzip(bytes) ? gunzip(bytes, what) : bytes;
  if (raw.length < 4) throw new Error(`${what}: not an IDX file (${raw.length} bytes)`);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  if (raw[0] !== 0 || raw[1] !== 0) throw new Error(`${what}: not an IDX file (bad magic number)`);
  if (raw[2] !== UNSIGNED_BYTE) throw new Error(`${what}: IDX type 0x${raw[2]!.toString(16)} is not unsigned byte (0x08)`);
  const rank = raw[3]!;
  const headerBytes = 4 + 4 * rank;
  if (rank < 1 || raw.length < headerBytes) throw new Error(`${what}: truncated IDX header`);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((a, b) => a * b, 1);
  if (raw.length !== headerBytes + count) {
    throw new Error(`${what}: IDX header [${dims.join(", ")}] needs ${headerBytes + count} bytes, the file has ${raw.length}`);
  }
  return { dims, data: raw.subarray(headerBytes) };
}

/** Encodes an IDX file of unsigned bytes (uncompressed); the inverse of parseIdx, used by tests. */
export function encodeIdx(dims: readonly number[], data: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = UNSIGNED_BYTE;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, data]);
}

function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

function gunzip(bytes: Uint8Array, what: string): Uint8Array {
  try {
    return gunzipSync(bytes);
  } catch (err) {
    throw new Error(`${what}: cannot decompress (${err instanceof Error ? err.message : String(err)})`);
  }
}
