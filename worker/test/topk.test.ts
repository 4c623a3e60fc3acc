/**
 * Top-k sparsification with error feedback: the right elements are chosen, and nothing is lost —
 * what is not sent now is sent later.
 */
import t from "tap";
import { topKIndices, TopKCompressor } from "../src/topk.ts";

t.test("topKIndices picks the k largest magnitudes", async (t) => {
  const x = new Float32Array([0.1, -5, 3, 0, -0.2, 4, 2.5]);
  t.same(Array.from(topKIndices(x, 3)), [1, 2, 5], "|-5|, |4|, |3| at indices 1, 5, 2 (returned sorted)");
  t.same(Array.from(topKIndices(x, 1)), [1], "k = 1: the largest magnitude, -5");
  t.same(Array.from(topKIndices(x, 10)), [0, 1, 2, 3, 4, 5, 6], "k ≥ n: everything");
  // Against a full sort on random data.
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  for (let trial = 0; trial < 20; trial++) {
    const n = 50 + trial * 37;
    const data = Float32Array.from({ length: n }, rand);
    const k = 1 + (trial * 13) % n;
    const expected = Array.from(data.keys()).sort((a, b) => Math.abs(data[b]!) - Math.abs(data[a]!)).slice(0, k).sort((a, b) => a - b);
    t.same(Array.from(topKIndices(data, k)), expected, `n=${n} k=${k} matches a full sort`);
  }
});

t.test("error feedback: nothing is lost, only delayed", async (t) => {
  const c = new TopKCompressor(0.25);
  const given = new Float64Array(8);
  const sent = new Float64Array(8);
  // 10 real gradients, then zero gradients until everything owed has gone out.
  for (let step = 0; step < 40; step++) {
    const g = step < 10 ? Float32Array.from({ length: 8 }, (_, i) => Math.cos(step + i * 3)) : new Float32Array(8);
    g.forEach((v, i) => (given[i] = given[i]! + v));
    const [s] = c.compress([{ name: "w", shape: [8], data: g }]);
    t.equal(s!.indices.length, 2, `step ${step}: ceil(0.25 × 8) = 2 values sent`);
    s!.indices.forEach((idx, j) => (sent[idx] = sent[idx]! + s!.values[j]!));
  }
  const worst = Math.max(...Array.from(given, (g, i) => Math.abs(g - sent[i]!)));
  t.ok(worst < 1e-5, `Σ sent = Σ given for every element (max difference ${worst})`);
});

t.test("a ratio outside (0, 1] is refused", async (t) => {
  t.throws(() => new TopKCompressor(0), /top-k ratio/, "0 refused");
  t.throws(() => new TopKCompressor(1.5), /top-k ratio/, "1.5 refused");
});
