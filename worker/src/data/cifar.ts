/**
 * The CIFAR-10 and CIFAR-100 "binary version" (https://www.cs.toronto.edu/~kriz/cifar.html): a tar.gz
 * holding fixed-size records.
 *
 *   CIFAR-10:  cifar-10-batches-bin/data_batch_1.bin .. data_batch_5.bin (training, in that order) and
 *              test_batch.bin; each record is <1 byte label><3072 bytes image>.
 *   CIFAR-100: cifar-100-binary/train.bin and test.bin; each record is <1 byte coarse label>
 *              <1 byte fine label><3072 bytes image>.
 *
 * An image is 1024 red, then 1024 green, then 1024 blue values, each plane 32x32 row-major
 * (channel-first); we reorder it to channel-last [32, 32, 3], the layout the models take.
 */
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Parser, type ReadEntry } from "tar";
import { basename } from "node:path";

export const CIFAR_SIDE = 32;
const PLANE = CIFAR_SIDE * CIFAR_SIDE;
const IMAGE_BYTES = 3 * PLANE;

export type CifarVariant = "cifar10" | "cifar100";
/** CIFAR-100's label kinds: the 100 fine classes or the 20 coarse superclasses. */
export type Cifar100Labels = "fine" | "coarse";

/** The training and test images (channel-last bytes) and labels of one archive. */
export interface CifarData {
  readonly train: { pixels: Uint8Array; labels: Int32Array };
  readonly test: { pixels: Uint8Array; labels: Int32Array };
}

const MEMBERS: Record<CifarVariant, { train: readonly string[]; test: readonly string[] }> = {
  cifar10: { train: ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"], test: ["test_batch.bin"] },
  cifar100: { train: ["train.bin"], test: ["test.bin"] },
};

/** The member files of the archive that hold data, in training order then test. */
export function cifarMembers(variant: CifarVariant): { train: readonly string[]; test: readonly string[] } {
  return MEMBERS[variant];
}

/**
 * Reads a CIFAR binary-version archive (tar, gzip-compressed or not: tar detects it). Members are
 * matched by file name whatever their directory; a missing one is an error that names it.
 */
export async function readCifarArchive(archive: Readable, variant: CifarVariant, what: string, labels: Cifar100Labels = "fine"): Promise<CifarData> {
  const wanted = new Set([...MEMBERS[variant].train, ...MEMBERS[variant].test]);
  const found = new Map<string, Buffer>();
  const parser = new Parser({
    onReadEntry: (entry: ReadEntry) => {
      const name = basename(entry.path);
      if (entry.type !== "File" || !wanted.has(name)) {
        entry.resume();
        return;
      }
      const chunks: Buffer[] = [];
      entry.on("data", (chunk: Buffer) => chunks.push(chunk));
      entry.on("end", () => found.set(name, Buffer.concat(chunks)));
    },
  });
  try {
    await pipeline(archive, parser);
  } catch (err) {
    throw new Error(`${what}: not a readable tar.gz archive (${err instanceof Error ? err.message : String(err)})`);
  }
  const missing = [...wanted].filter((name) => !found.has(name));
  if (missing.length > 0) {
    throw new Error(`${what}: the archive has no ${missing.join(", ")} (is it the ${variant === "cifar10" ? "CIFAR-10" : "CIFAR-100"} binary version?)`);
  }
  // Each member checked on its own: joined first, one a byte short and another a byte long would pass.
  const part = (names: readonly string[]) => joinRecords(names.map((n) => parseRecords(found.get(n)!, variant, labels, `${what} (${n})`)));
  return { train: part(MEMBERS[variant].train), test: part(MEMBERS[variant].test) };
}

/** The records of several members, in order. */
function joinRecords(parts: readonly { pixels: Uint8Array; labels: Int32Array }[]): { pixels: Uint8Array; labels: Int32Array } {
  const pixels = new Uint8Array(parts.reduce((n, p) => n + p.pixels.length, 0));
  const y = new Int32Array(parts.reduce((n, p) => n + p.labels.length, 0));
  let at = 0;
  let count = 0;
  for (const p of parts) {
    pixels.set(p.pixels, at);
    y.set(p.labels, count);
    at += p.pixels.length;
    count += p.labels.length;
  }
  return { pixels, labels: y };
}

/** The number of classes a label of `variant` (CIFAR-100: of the `labels` kind) lies below. */
function classCount(variant: CifarVariant, labels: Cifar100Labels): number {
  return variant === "cifar10" ? 10 : labels === "fine" ? 100 : 20;
}

/** Decodes one member's records into channel-last pixels and labels; `what` names the member in errors. */
export function parseRecords(bytes: Uint8Array, variant: CifarVariant, labels: Cifar100Labels, what: string): { pixels: Uint8Array; labels: Int32Array } {
  const labelBytes = variant === "cifar10" ? 1 : 2;
  const recordBytes = labelBytes + IMAGE_BYTES;
  if (bytes.length % recordBytes !== 0) {
    throw new Error(`${what}: ${bytes.length} bytes is not a whole number of ${recordBytes}-byte records`);
  }
  const count = bytes.length / recordBytes;
  const pixels = new Uint8Array(count * IMAGE_BYTES);
  const y = new Int32Array(count);
  // CIFAR-100 records start with the coarse label, then the fine one.
  const labelOffset = variant === "cifar100" && labels === "fine" ? 1 : 0;
  const classes = classCount(variant, labels);
  for (let i = 0; i < count; i++) {
    const record = i * recordBytes;
    y[i] = bytes[record + labelOffset]!;
    if (y[i]! >= classes) throw new Error(`${what}: record ${i} has label ${y[i]}, outside [0, ${classes}) (a corrupted file, or not ${variant === "cifar10" ? "CIFAR-10" : "CIFAR-100"})`);
    const image = record + labelBytes;
    const out = i * IMAGE_BYTES;
    for (let p = 0; p < PLANE; p++) {
      pixels[out + 3 * p] = bytes[image + p]!;
      pixels[out + 3 * p + 1] = bytes[image + PLANE + p]!;
      pixels[out + 3 * p + 2] = bytes[image + 2 * PLANE + p]!;
    }
  }
  return { pixels, labels: y };
}
