/**
 * Damaging a checkpoint on disk while no server runs: cut the newest `ckpt-*.safetensors` short, or
 * XOR one byte of its header (the 8-byte length or the JSON with the metadata) or of its tensor
 * data. The restarted server must notice and fall back to an older checkpoint.
 */
import { readdirSync } from "node:fs";
import { readFile, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { CheckpointDamage } from "./plan.ts";

const CHECKPOINT = /^ckpt-\d+\.safetensors$/;

/** The checkpoint files in `dir`, oldest first (names carry the zero-padded version). */
export function checkpointFiles(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => CHECKPOINT.test(f)).sort();
  } catch {
    return [];
  }
}

/** Where in a safetensors file a byte offset falls. */
export function regionOf(bytes: Uint8Array, offset: number): "length" | "header" | "data" {
  if (offset < 8) return "length";
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  return offset < 8 + headerLength ? "header" : "data";
}

/** Applies `damage` to the newest checkpoint in `dir`; says what it did (or that there was none). */
export async function damageNewestCheckpoint(dir: string, damage: CheckpointDamage): Promise<string> {
  const newest = checkpointFiles(dir).at(-1);
  if (newest === undefined) return "no checkpoint to damage";
  const path = join(dir, newest);
  const bytes = new Uint8Array(await readFile(path));
  if (damage.kind === "truncate") {
    const length = Math.floor(damage.fraction * bytes.length);
    await truncate(path, length);
    return `truncated ${newest} from ${bytes.length} to ${length} bytes (cut in the ${length < bytes.length ? regionOf(bytes, length) : "end"})`;
  }
  // The header ends where the data begins (or at the end of a file too short to say).
  const headerEnd = bytes.length < 8 ? bytes.length : Math.min(bytes.length, 8 + Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true)));
  const [start, end] = damage.region === "header" || headerEnd >= bytes.length ? [0, headerEnd] : [headerEnd, bytes.length];
  const offset = Math.min(end - 1, start + Math.floor(damage.fraction * (end - start)));
  const before = bytes[offset]!;
  const region = regionOf(bytes, offset);
  bytes[offset] = before ^ damage.xor;
  await writeFile(path, bytes);
  const shown = (b: number) => (b >= 0x20 && b < 0x7f ? `'${String.fromCharCode(b)}'` : `0x${b.toString(16).padStart(2, "0")}`);
  return `${newest}: byte ${offset} of ${bytes.length} (${region}) ${shown(before)} -> ${shown(bytes[offset]!)}`;
}
