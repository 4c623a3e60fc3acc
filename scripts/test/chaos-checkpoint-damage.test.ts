/**
 * The chaos suite's checkpoint damage (scripts/lib/chaos/checkpoint-damage.ts) on real files: only
 * the newest `ckpt-*.safetensors` is touched, a cut or a flipped data byte makes it unreadable or
 * fail its checksum, and the report says where the damage fell.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import t from "tap";
import { decodeSafetensors, encodeSafetensors, verifyChecksum } from "../../common/src/safetensors.ts";
import { checkpointFiles, damageNewestCheckpoint, regionOf } from "../lib/chaos/checkpoint-damage.ts";

function writeCheckpoints(dir: string): Uint8Array {
  const bytes = encodeSafetensors([{ name: "params/w", shape: [64], data: new Float32Array(64).fill(0.5) }], { version: "50" }, { checksum: true });
  for (const v of [25, 50]) writeFileSync(join(dir, `ckpt-${String(v).padStart(10, "0")}.safetensors`), bytes);
  writeFileSync(join(dir, "ckpt-0000000075.safetensors.tmp-123"), bytes); // a write in progress is not a checkpoint
  return bytes;
}

const usable = (bytes: Uint8Array) => {
  try {
    verifyChecksum(bytes, decodeSafetensors(bytes));
    return true;
  } catch {
    return false;
  }
};

t.test("the newest checkpoint, truncated: unreadable; the older one untouched", async (t) => {
  const dir = t.testdir();
  const original = writeCheckpoints(dir);
  t.same(checkpointFiles(dir), ["ckpt-0000000025.safetensors", "ckpt-0000000050.safetensors"], "checkpoints oldest first, temporary files left out");
  const said = await damageNewestCheckpoint(dir, { kind: "truncate", fraction: 0.5 });
  t.match(said, new RegExp(`truncated ckpt-0000000050.safetensors from ${original.length} to ${Math.floor(original.length / 2)} bytes`));
  t.equal(usable(new Uint8Array(readFileSync(join(dir, "ckpt-0000000050.safetensors")))), false, "the newest no longer loads");
  t.same(new Uint8Array(readFileSync(join(dir, "ckpt-0000000025.safetensors"))), original, "the older one is unchanged");
});

t.test("a byte flipped in the data fails the checksum; the report names the region", async (t) => {
  const dir = t.testdir();
  const original = writeCheckpoints(dir);
  const said = await damageNewestCheckpoint(dir, { kind: "flip", region: "data", fraction: 0.5, xor: 0x40 });
  t.match(said, /ckpt-0000000050.safetensors: byte \d+ of \d+ \(data\)/);
  const damaged = new Uint8Array(readFileSync(join(dir, "ckpt-0000000050.safetensors")));
  t.equal(damaged.length, original.length, "same length");
  t.equal(damaged.filter((b, i) => b !== original[i]).length, 1, "exactly one byte differs");
  t.equal(usable(damaged), false, "the checksum catches it");
});

t.test("a byte flipped in the header lands in the header: the file differs there and only there", async (t) => {
  const dir = t.testdir();
  const original = writeCheckpoints(dir);
  const headerEnd = 8 + Number(new DataView(original.buffer, original.byteOffset, 8).getBigUint64(0, true));
  for (const fraction of [0, 0.5, 0.999]) {
    writeCheckpoints(dir);
    t.match(await damageNewestCheckpoint(dir, { kind: "flip", region: "header", fraction, xor: 0x01 }), /\((length|header)\)/);
    const damaged = new Uint8Array(readFileSync(join(dir, "ckpt-0000000050.safetensors")));
    const changed = [...damaged.keys()].filter((i) => damaged[i] !== original[i]);
    t.ok(changed.length === 1 && changed[0]! < headerEnd, `fraction ${fraction}: byte ${changed[0]} of the ${headerEnd}-byte header`);
  }
});

t.test("regions of a safetensors file", async (t) => {
  const bytes = encodeSafetensors([{ name: "w", shape: [2], data: new Float32Array(2) }], {});
  const header = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  t.same([regionOf(bytes, 0), regionOf(bytes, 7), regionOf(bytes, 8), regionOf(bytes, 7 + header), regionOf(bytes, 8 + header)], ["length", "length", "header", "header", "data"]);
});

t.test("no checkpoint: nothing to damage", async (t) => {
  t.equal(await damageNewestCheckpoint(t.testdir(), { kind: "truncate", fraction: 0 }), "no checkpoint to damage");
});
