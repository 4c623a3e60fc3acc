import t from "tap";
import { bytesOf, copyBytes } from "../src/copy-bytes.ts";

const memories = {
  ordinary: (n: number) => new Uint8Array(n),
  shared: (n: number) => new Uint8Array(new SharedArrayBuffer(n)),
};

t.test("copyBytes copies any range to any offset, between ordinary and shared memory in every direction", async (t) => {
  for (const [fromName, from] of Object.entries(memories)) {
    for (const [toName, to] of Object.entries(memories)) {
      const backing = from(40);
      for (let i = 0; i < backing.length; i++) backing[i] = i + 1;
      let wrong = 0;
      let cases = 0;
      // Sources that are views at odd offsets, whole buffers, and parts of them; 0, 1 and more bytes.
      for (const [srcStart, srcEnd] of [[0, 40], [3, 20], [7, 8], [5, 5], [0, 1], [13, 40]] as const) {
        const src = backing.subarray(srcStart, srcEnd);
        for (const [start, end] of [[0, src.length], [0, Math.max(0, src.length - 1)], [Math.min(1, src.length), src.length]]) {
          for (const at of [0, 1, 6]) {
            const dst = to(48);
            copyBytes(src, start!, end!, dst, at);
            const expected = new Uint8Array(48);
            expected.set(src.subarray(start, end), at);
            cases++;
            if (dst.some((b, i) => b !== expected[i])) wrong++;
          }
        }
      }
      t.equal(wrong, 0, `${fromName} → ${toName}: ${cases} copies byte-exact, nothing written outside the range`);
    }
  }
});

t.test("copyBytes refuses a range that does not fit instead of cutting it short", async (t) => {
  const src = new Uint8Array(8);
  const dst = new Uint8Array(new SharedArrayBuffer(8));
  t.throws(() => copyBytes(src, 0, 8, dst, 1), /bytes \[0, 8\) of 8 do not fit at 1 of 8/);
  t.throws(() => copyBytes(src, 4, 9, dst, 0), /bytes \[4, 9\) of 8 do not fit/);
  t.throws(() => copyBytes(src, 5, 4, dst, 0), /bytes \[5, 4\)/);
});

t.test("bytesOf is a view of the same memory", async (t) => {
  const f = new Float32Array(new SharedArrayBuffer(16), 4, 2);
  const b = bytesOf(f);
  t.equal(b.buffer, f.buffer);
  t.equal(b.byteOffset, 4);
  t.equal(b.length, 8);
  b[7] = 0x3f;
  b[6] = 0x80;
  t.equal(f[1], 1, "writing the bytes changes the floats");
});
