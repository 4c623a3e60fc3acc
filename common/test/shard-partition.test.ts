import t from "tap";
import { elementCount } from "../src/named-tensor.ts";
import { partitionTensors, shardOfTensor, splitByShard, type TensorSpec } from "../src/shard-partition.ts";

/** ResNet-18's (CIFAR variant, 10 classes) trainable tensors: 62 tensors, 11,173,962 elements. */
function resnet18Layout(): TensorSpec[] {
  const layout: TensorSpec[] = [{ name: "stem/conv/kernel", shape: [3, 3, 3, 64] }, { name: "stem/bn/gamma", shape: [64] }, { name: "stem/bn/beta", shape: [64] }];
  let inC = 64;
  [64, 128, 256, 512].forEach((c, stage) => {
    for (let block = 0; block < 2; block++) {
      const p = `stage${stage + 1}/block${block + 1}`;
      const cin = block === 0 ? inC : c;
      layout.push({ name: `${p}/conv1/kernel`, shape: [3, 3, cin, c] }, { name: `${p}/bn1/gamma`, shape: [c] }, { name: `${p}/bn1/beta`, shape: [c] });
      layout.push({ name: `${p}/conv2/kernel`, shape: [3, 3, c, c] }, { name: `${p}/bn2/gamma`, shape: [c] }, { name: `${p}/bn2/beta`, shape: [c] });
      if (block === 0 && cin !== c) {
        layout.push({ name: `${p}/shortcut/kernel`, shape: [1, 1, cin, c] }, { name: `${p}/shortcut_bn/gamma`, shape: [c] }, { name: `${p}/shortcut_bn/beta`, shape: [c] });
      }
    }
    inC = c;
  });
  layout.push({ name: "dense/kernel", shape: [512, 10] }, { name: "dense/bias", shape: [10] });
  return layout;
}

/** A seeded shuffle (mulberry32), so the order-independence check is reproducible. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  let s = seed >>> 0;
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = Math.imul(s ^ (s >>> 15), 1 | s);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const size = (layout: readonly TensorSpec[]) => new Map(layout.map((s) => [s.name, elementCount(s.shape)]));

t.test("every tensor lands on exactly one shard, and each part keeps the layout's order", async (t) => {
  const layout = resnet18Layout();
  t.equal(layout.reduce((n, s) => n + elementCount(s.shape), 0), 11_173_962, "the test layout is ResNet-18's size");
  for (const k of [1, 2, 3, 4, 7, 16]) {
    const parts = partitionTensors(layout, k);
    t.equal(parts.length, k, `${k} parts for ${k} shards`);
    const all = parts.flatMap((p) => p.names);
    t.same([...all].sort(), layout.map((s) => s.name).sort(), `K=${k}: the parts together hold every tensor exactly once`);
    const position = new Map(layout.map((s, i) => [s.name, i]));
    t.ok(
      parts.every((p) => p.names.every((n, i) => i === 0 || position.get(p.names[i - 1]!)! < position.get(n)!)),
      `K=${k}: each part lists its tensors in layout order`,
    );
    const sizes = size(layout);
    t.ok(parts.every((p) => p.elements === p.names.reduce((n, name) => n + sizes.get(name)!, 0)), `K=${k}: each part's element count is the sum of its tensors`);
  }
});

t.test("the parts are balanced: no two differ by more than the largest tensor", async (t) => {
  const cases: [string, TensorSpec[]][] = [
    ["resnet18", resnet18Layout()],
    ["mlp", [{ name: "dense1/kernel", shape: [20, 64] }, { name: "dense1/bias", shape: [64] }, { name: "dense2/kernel", shape: [64, 64] }, { name: "dense2/bias", shape: [64] }, { name: "out/kernel", shape: [64, 10] }, { name: "out/bias", shape: [10] }]],
    ["equal tensors", Array.from({ length: 12 }, (_, i) => ({ name: `t${String(i).padStart(2, "0")}`, shape: [100] }))],
  ];
  for (const [label, layout] of cases) {
    const largest = Math.max(...layout.map((s) => elementCount(s.shape)));
    const total = layout.reduce((n, s) => n + elementCount(s.shape), 0);
    for (const k of [2, 3, 4]) {
      const loads = partitionTensors(layout, k).map((p) => p.elements);
      t.ok(Math.max(...loads) - Math.min(...loads) <= largest, `${label}, K=${k}: loads [${loads}] differ by at most the largest tensor (${largest})`);
      t.ok(Math.max(...loads) < total / k + largest, `${label}, K=${k}: the largest part is below total/K + largest tensor`);
    }
  }
  const equal = partitionTensors(cases[2]![1], 4).map((p) => p.elements);
  t.same(equal, [300, 300, 300, 300], "12 equal tensors over 4 shards: exactly 3 each");
  const resnet = partitionTensors(resnet18Layout(), 2).map((p) => p.elements);
  t.ok(Math.abs(resnet[0]! - resnet[1]!) / 11_173_962 < 0.01, `ResNet-18 over 2 shards is within 1%: [${resnet}]`);
});

t.test("deterministic: the same layout in any order gives the same assignment", async (t) => {
  const layout = resnet18Layout();
  for (const k of [2, 3, 5]) {
    const reference = shardOfTensor(layout, k);
    for (const seed of [1, 2, 3]) {
      const again = shardOfTensor(shuffled(layout, seed), k);
      t.same([...again].sort(), [...reference].sort(), `K=${k}: a shuffled layout (seed ${seed}) maps every tensor to the same shard`);
    }
  }
  // Ties in size are broken by name, not by position: swapping two equal tensors swaps nothing.
  const a = shardOfTensor([{ name: "a", shape: [4] }, { name: "b", shape: [4] }], 2);
  const b = shardOfTensor([{ name: "b", shape: [4] }, { name: "a", shape: [4] }], 2);
  t.same([a.get("a"), a.get("b")], [0, 1], "equal sizes: the lower name goes to the lower shard");
  t.same([b.get("a"), b.get("b")], [0, 1], "whatever order they are listed in");
});

t.test("one shard holds everything; more shards than tensors leaves parts empty", async (t) => {
  const layout = [{ name: "w", shape: [2, 2] }, { name: "b", shape: [2] }];
  t.same(partitionTensors(layout, 1), [{ names: ["w", "b"], elements: 6 }], "K=1 is the whole layout in order");
  const three = partitionTensors(layout, 3);
  t.same(three.map((p) => p.names), [["w"], ["b"], []], "2 tensors on 3 shards: the third is empty");
  t.throws(() => partitionTensors(layout, 0), RangeError, "0 shards is refused");
  t.throws(() => partitionTensors([...layout, { name: "w", shape: [1] }], 2), /duplicate tensor name "w"/, "a duplicate name is refused");
});

t.test("splitByShard routes tensors by owner and refuses unknown names", async (t) => {
  const layout = [{ name: "w", shape: [8] }, { name: "b", shape: [2] }, { name: "c", shape: [3] }];
  const owner = shardOfTensor(layout, 2);
  const tensors = layout.map((s) => ({ ...s, data: new Float32Array(elementCount(s.shape)) }));
  const parts = splitByShard(tensors, owner, 2);
  t.same(parts.map((p) => p.map((x) => x.name)), [["w"], ["b", "c"]], "the big tensor alone, the two small ones together");
  t.equal(parts[0]![0], tensors[0], "the tensors themselves are passed on, not copies");
  t.throws(() => splitByShard([{ name: "x" }], owner, 2), /"x" belongs to no shard of 2/, "an unknown name is an error");
});
