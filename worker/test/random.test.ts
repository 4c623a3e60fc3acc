import t from "tap";
import { Random, deriveSeed } from "../src/data/random.ts";

t.test("the same seed gives the same stream, pinned to golden values", async (t) => {
  const a = new Random(42);
  const b = new Random(42);
  const streamA = Array.from({ length: 1000 }, () => a.nextUint32());
  const streamB = Array.from({ length: 1000 }, () => b.nextUint32());
  t.same(streamA, streamB, "two generators with seed 42 agree");
  // Golden values: if these change, every existing seeded dataset/partition changes too.
  t.same(streamA.slice(0, 5), [1713710187, 3943269471, 1572380578, 655714854, 3859874335],
    "sfc32 seeded with 42 produces the recorded first outputs");
  t.equal(deriveSeed(42, 1), 2841494124, "deriveSeed is pinned");
  t.same(Array.from(new Random(7).shuffle(Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]))),
    [6, 4, 9, 8, 2, 5, 3, 7, 1, 0], "shuffle with seed 7 is pinned");
});

t.test("different seeds give different streams", async (t) => {
  const first = (seed: number) => Array.from({ length: 8 }, ((r) => () => r.nextUint32())(new Random(seed)));
  t.notSame(first(1), first(2), "seeds 1 and 2 differ");
  t.notSame(first(0), first(1), "seeds 0 and 1 differ");
  t.notSame(first(2 ** 31), first(0), "a seed's high bit matters");
  t.throws(() => new Random(1.5), RangeError, "a non-integer seed is rejected");
});

t.test("nextFloat is in [0, 1) and nextInt in [0, n) and roughly uniform", async (t) => {
  const random = new Random(3);
  const n = 7;
  const counts = new Array<number>(n).fill(0);
  const draws = 70_000;
  for (let i = 0; i < draws; i++) {
    const f = random.nextFloat();
    if (!(f >= 0 && f < 1)) t.fail(`nextFloat out of range: ${f}`);
    const k = random.nextInt(n);
    if (!(Number.isInteger(k) && k >= 0 && k < n)) t.fail(`nextInt(${n}) out of range: ${k}`);
    counts[k] = (counts[k] ?? 0) + 1;
  }
  // Chi-square with 6 degrees of freedom: 22.5 is the 0.999 quantile.
  const expected = draws / n;
  const chiSquare = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
  t.ok(chiSquare < 22.5, `nextInt(7) counts look uniform (chi^2 = ${chiSquare.toFixed(2)}, counts ${counts})`);
  t.throws(() => random.nextInt(0), RangeError, "nextInt(0) is rejected");
  t.throws(() => random.nextInt(2.5), RangeError, "a non-integer bound is rejected");
});

t.test("normal() has mean 0 and variance 1", async (t) => {
  const random = new Random(11);
  const draws = 50_000;
  let sum = 0;
  let sumSquares = 0;
  for (let i = 0; i < draws; i++) {
    const z = random.normal();
    sum += z;
    sumSquares += z * z;
  }
  const mean = sum / draws;
  const variance = sumSquares / draws - mean * mean;
  t.ok(Math.abs(mean) < 0.02, `mean ${mean} is near 0`);
  t.ok(Math.abs(variance - 1) < 0.03, `variance ${variance} is near 1`);
});

t.test("shuffle permutes in place and is deterministic", async (t) => {
  const original = Int32Array.from({ length: 100 }, (_, i) => i);
  const shuffled = new Random(5).shuffle(original.slice());
  t.same(Array.from(shuffled).sort((a, b) => a - b), Array.from(original), "shuffle is a permutation");
  t.notSame(Array.from(shuffled), Array.from(original), "shuffle changed the order");
  t.same(new Random(5).shuffle(original.slice()), shuffled, "same seed, same permutation");
  t.same(new Random(5).shuffle([] as number[]), [], "an empty array is fine");
});
