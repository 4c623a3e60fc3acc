import t from "tap";
import { epochBatches, gather, sliceForPart } from "../src/data/partition.ts";

t.test("slices are disjoint, cover every index once, and differ in size by at most one", async (t) => {
  const combos: [count: number, workers: number][] = [[0, 1], [0, 3], [1, 1], [1, 3], [10, 3], [100, 7], [5, 8], [16000, 4], [16001, 6]];
  for (const [count, workers] of combos) {
    const seen = new Uint8Array(count);
    const sizes: number[] = [];
    let duplicates = 0;
    let outOfRange = 0;
    for (let slot = 0; slot < workers; slot++) {
      const slice = sliceForPart(count, slot, workers, 42);
      sizes.push(slice.length);
      for (const index of slice) {
        if (!(index >= 0 && index < count)) outOfRange++;
        else if (seen[index] === 1) duplicates++;
        else seen[index] = 1;
      }
    }
    t.equal(outOfRange, 0, `count ${count}, ${workers} workers: every index in range`);
    t.equal(duplicates, 0, `count ${count}, ${workers} workers: no index in two slices`);
    t.ok(seen.every((s) => s === 1), `count ${count}, ${workers} workers: every index covered`);
    t.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `count ${count}, ${workers} workers: sizes ${sizes} near-equal`);
  }
});

t.test("sliceForPart is deterministic and depends on the seed", async (t) => {
  t.same(sliceForPart(1000, 2, 4, 7), sliceForPart(1000, 2, 4, 7), "same arguments, same slice");
  t.notSame(sliceForPart(1000, 2, 4, 7), sliceForPart(1000, 2, 4, 8), "another seed, another slice");
  const slice = sliceForPart(1000, 0, 1, 7);
  t.notSame(Array.from(slice), Array.from({ length: 1000 }, (_, i) => i), "indices are shuffled, not in storage order");
});

t.test("sliceForPart rejects bad arguments", async (t) => {
  t.throws(() => sliceForPart(10, 3, 3, 1), RangeError, "part == parts");
  t.throws(() => sliceForPart(10, -1, 3, 1), RangeError, "negative part");
  t.throws(() => sliceForPart(10, 0, 0, 1), RangeError, "zero parts");
  t.throws(() => sliceForPart(-1, 0, 1, 1), RangeError, "negative count");
});

t.test("epochBatches yields full batches of the slice, deterministic per epoch", async (t) => {
  const slice = sliceForPart(1000, 1, 3, 5); // 333 examples
  const batches = epochBatches(slice, 32, 5, 0);
  t.equal(batches.length, Math.floor(slice.length / 32), "floor(n / batchSize) batches; the remainder is dropped");
  t.ok(batches.every((b) => b.length === 32), "every batch is full");
  const used = batches.flatMap((b) => Array.from(b));
  t.equal(new Set(used).size, used.length, "no example twice in one epoch");
  const members = new Set(slice);
  t.ok(used.every((i) => members.has(i)), "every example comes from the slice");

  t.same(epochBatches(slice, 32, 5, 0), batches, "same (seed, epoch), same batches");
  t.notSame(epochBatches(slice, 32, 5, 1), batches, "the next epoch is reshuffled");
  t.notSame(epochBatches(slice, 32, 6, 0), batches, "another seed, another order");
  const dropped = (epoch: number) => {
    const kept = new Set(epochBatches(slice, 32, 5, epoch).flatMap((b) => Array.from(b)));
    return Array.from(slice).filter((i) => !kept.has(i)).sort((a, b) => a - b);
  };
  t.notSame(dropped(0), dropped(1), "a different remainder is dropped in different epochs");
  t.same(Array.from(slice), Array.from(sliceForPart(1000, 1, 3, 5)), "the caller's slice is not modified");
});

t.test("epochBatches handles exact multiples and rejects a slice smaller than one batch", async (t) => {
  const slice = Int32Array.from({ length: 64 }, (_, i) => i);
  t.equal(epochBatches(slice, 32, 1, 0).length, 2, "64 examples make exactly 2 batches of 32");
  t.equal(epochBatches(slice, 64, 1, 0).length, 1, "one batch of the whole slice");
  t.throws(() => epochBatches(slice, 65, 1, 0), RangeError, "batch larger than the slice");
  t.throws(() => epochBatches(slice, 0, 1, 0), RangeError, "zero batch size");
  t.throws(() => epochBatches(slice, 8, 1, -1), RangeError, "negative epoch");
});

t.test("gather copies the requested rows in order", async (t) => {
  const features = 3;
  const split = {
    x: Float32Array.from({ length: 5 * features }, (_, i) => i), // row r holds 3r, 3r+1, 3r+2
    y: Int32Array.from([10, 11, 12, 13, 14]),
    count: 5,
  };
  const batch = gather(split, Int32Array.from([4, 0, 2]));
  t.equal(batch.count, 3, "count is the number of indices");
  t.same(Array.from(batch.x), [12, 13, 14, 0, 1, 2, 6, 7, 8], "rows 4, 0, 2 in that order");
  t.same(Array.from(batch.y), [14, 10, 12], "labels follow the rows");
  batch.x[0] = -1;
  t.equal(split.x[12], 12, "the result is a copy, not a view");
  t.throws(() => gather(split, [5]), RangeError, "index past the end");
  t.equal(gather(split, []).count, 0, "no indices, empty batch");
});
