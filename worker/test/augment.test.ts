import t from "tap";
import type { Dataset, Split } from "../src/data/dataset.ts";
import { augmentBatch, trainBatch } from "../src/data/augment.ts";
import { gather } from "../src/data/partition.ts";
import { Random } from "../src/data/random.ts";

const H = 8;
const W = 8;
const C = 3;
const size = H * W * C;
/** Image n: value at (y, x, c) = 1 + n*1000 + y*100 + x*10 + c: every pixel is distinct and non-zero. */
const value = (n: number, y: number, x: number, c: number) => 1 + n * 1000 + y * 100 + x * 10 + c;
function images(count: number): Split {
  const x = new Float32Array(count * size);
  for (let n = 0; n < count; n++) for (let y = 0; y < H; y++) for (let xx = 0; xx < W; xx++) for (let c = 0; c < C; c++) x[n * size + (y * W + xx) * C + c] = value(n, y, xx, c);
  return { x, y: Int32Array.from({ length: count }, (_, i) => i % 10), count };
}
const at = (s: Split, n: number, y: number, x: number, c: number) => s.x[n * size + (y * W + x) * C + c]!;

t.test("every output image is a shifted (and maybe mirrored) copy of its input, zero-padded", async (t) => {
  const batch = images(64);
  const out = augmentBatch(batch, [H, W, C], new Random(5), 2, true);
  t.equal(out.x.length, batch.x.length, "same shape");
  t.same(out.y, batch.y, "labels unchanged");
  t.not(out.y, batch.y, "labels copied, not shared");
  let flipped = 0;
  let shifted = 0;
  for (let n = 0; n < 64; n++) {
    // Recover the transform from the output: find (dy, dx, mirror) that explains every pixel.
    let match: string | undefined;
    for (const mirror of [false, true]) {
      for (let dy = -2; dy <= 2; dy++) {
        for (let dx = -2; dx <= 2; dx++) {
          let ok = true;
          for (let y = 0; y < H && ok; y++) {
            for (let x = 0; x < W && ok; x++) {
              const sy = y + dy;
              const sx = (mirror ? W - 1 - x : x) + dx;
              for (let c = 0; c < C; c++) {
                const want = sy < 0 || sy >= H || sx < 0 || sx >= W ? 0 : value(n, sy, sx, c);
                if (at(out, n, y, x, c) !== want) ok = false;
              }
            }
          }
          if (ok) match = `${dy},${dx},${mirror}`;
        }
      }
    }
    t.ok(match, `image ${n} is a padded crop${match?.endsWith("true") ? " + flip" : ""} (${match})`);
    if (match?.endsWith("true")) flipped++;
    if (match && !match.startsWith("0,0,")) shifted++;
  }
  t.ok(flipped > 16 && flipped < 48, `about half are mirrored (${flipped} of 64)`);
  t.ok(shifted > 48, `most are shifted (${shifted} of 64)`);
  t.same(batch.x, images(64).x, "the input batch is not modified");
});

t.test("padding 0 and no flip is the identity; bad shapes are refused", async (t) => {
  const batch = images(4);
  t.same(augmentBatch(batch, [H, W, C], new Random(1), 0, false).x, batch.x);
  t.throws(() => augmentBatch(batch, [size], new Random(1)), /needs \[height, width, channels\]/);
  t.throws(() => augmentBatch(batch, [H, W, 1], new Random(1)), /not 4 images/);
});

t.test("trainBatch: augmented only when the dataset says so, deterministic per batch", async (t) => {
  const split = images(32);
  const plain: Dataset = { inputShape: [H, W, C], features: size, classes: 10, train: split, test: split };
  const cifarLike: Dataset = { ...plain, augmentation: { padding: 2, horizontalFlip: true, seed: 9 } };
  const indices = Int32Array.from([3, 7, 1, 30, 12, 5, 9, 21]);
  t.same(trainBatch(plain, indices), gather(split, indices), "no augmentation: exactly gather()");
  const a = trainBatch(cifarLike, indices);
  t.same(a.y, gather(split, indices).y, "labels follow the indices");
  t.notSame(a.x, gather(split, indices).x, "pixels changed");
  t.same(trainBatch(cifarLike, indices).x, a.x, "same batch, same augmentation (a recomputed batch sees the same images)");
  t.notSame(trainBatch({ ...cifarLike, augmentation: { padding: 2, horizontalFlip: true, seed: 10 } }, indices).x, a.x, "another seed, other crops");
  t.notSame(trainBatch(cifarLike, Int32Array.from([7, 3, 1, 30, 12, 5, 9, 21])).x.subarray(size, 2 * size), a.x.subarray(0, size),
    "the same image in another batch gets another crop");
  t.same(cifarLike.test.x, images(32).x, "the test split is never touched");
});
