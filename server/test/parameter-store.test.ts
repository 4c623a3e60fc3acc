import t from "tap";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { ParameterStore, type Snapshot } from "../src/store/parameter-store.ts";

function params(): NamedTensor[] {
  return [
    { name: "w", shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) },
    { name: "b", shape: [2], data: Float32Array.from([10, 20]) },
    { name: "s", shape: [], data: Float32Array.from([7]) },
  ];
}

const values = (s: { tensors: readonly NamedTensor[] }) => s.tensors.map((x) => Array.from(x.data));

/** Adds `k` to every element. */
const addAll = (k: number) => (ts: readonly NamedTensor[]) => {
  for (const x of ts) for (let i = 0; i < x.data.length; i++) x.data[i] = x.data[i]! + k;
};

/** Five snapshots on five distinct versions (0..4), each taken just before an update: every update copies. */
function holdFiveVersions(store: ParameterStore): Snapshot[] {
  const held: Snapshot[] = [];
  for (let i = 0; i < 5; i++) {
    held.push(store.acquire());
    store.update(addAll(1));
  }
  return held;
}

/** Small deterministic PRNG (mulberry32) so a failing sequence can be replayed. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test("initialize copies its input and reports the layout", async (t) => {
  const store = new ParameterStore();
  t.equal(store.initialized, false, "not initialised at first");
  t.equal(store.version, 0, "version 0 before initialisation");
  t.same(store.layout(), [], "empty layout before initialisation");
  t.throws(() => store.acquire(), /not initialised/, "acquire before initialize throws");
  t.throws(() => store.update(() => {}), /not initialised/, "update before initialize throws");

  const input = params();
  const shape = input[0]!.shape as number[];
  store.initialize(input);
  input[0]!.data[0] = 999;
  shape[0] = 99;
  t.equal(store.initialized, true, "initialised");
  t.equal(store.version, 0, "fresh run starts at version 0");
  t.equal(store.tensorCount, 3, "3 tensors");
  t.equal(store.elementCount, 4 + 2 + 1, "4 + 2 + 1 = 7 elements");
  t.same(store.shapeOf("w"), [2, 2], "shape of w is a copy, unaffected by mutating the input shape");
  t.same(store.shapeOf("s"), [], "scalar shape []");
  t.equal(store.shapeOf("nope"), undefined, "unknown name → undefined shape");
  t.same(store.layout(), [
    { name: "w", shape: [2, 2] },
    { name: "b", shape: [2] },
    { name: "s", shape: [] },
  ], "layout in storage order");
  const snap = store.acquire();
  t.same(values(snap), [[1, 2, 3, 4], [10, 20], [7]], "stored values are a copy: mutating the input afterwards has no effect");
  snap.release();

  const resumed = new ParameterStore();
  resumed.initialize(params(), 41);
  t.equal(resumed.version, 41, "initialize can resume at a given version");
  t.equal(resumed.update(addAll(1)), 42, "the next update gives version 42");
});

t.test("initialize refuses a second call, duplicate names and data/shape mismatches", async (t) => {
  const store = new ParameterStore();
  t.throws(
    () => store.initialize([...params(), { name: "b", shape: [1], data: new Float32Array(1) }]),
    /duplicate tensor name "b"/,
    "duplicate name refused",
  );
  t.equal(store.initialized, false, "a refused initialisation leaves the store uninitialised");
  t.throws(() => store.initialize([{ name: "x", shape: [3], data: new Float32Array(2) }]), /"x" data does not match shape \[3\]/, "mismatch refused");
  t.equal(store.tensorCount, 0, "nothing indexed after refusals");
  store.initialize(params());
  t.throws(() => store.initialize(params()), /already initialised/, "second initialisation refused");
  t.equal(store.tensorCount, 3, "the first initialisation stands");
});

t.test("each update advances the version by one and mutates the current values", async (t) => {
  const store = new ParameterStore();
  store.initialize(params());
  t.equal(store.update(addAll(1)), 1, "first update → version 1");
  t.equal(store.update(addAll(1)), 2, "second update → version 2");
  t.equal(store.version, 2, "version getter agrees");
  const s = store.acquire();
  t.equal(s.version, 2, "snapshot carries version 2");
  t.same(values(s), [[3, 4, 5, 6], [12, 22], [9]], "values are initial + 2");
  s.release();
});

t.test("copy-on-write: a snapshot keeps its version across updates; a new acquire sees the new one", async (t) => {
  const store = new ParameterStore();
  store.initialize(params());
  const old = store.acquire();
  let seen: number[][] = [];
  store.update((ts) => {
    seen = ts.map((x) => Array.from(x.data));
    addAll(100)(ts);
  });
  t.same(seen, [[1, 2, 3, 4], [10, 20], [7]], "mutate starts from the current values (the copy is filled in)");
  t.equal(old.version, 0, "old snapshot still reports version 0");
  t.same(values(old), [[1, 2, 3, 4], [10, 20], [7]], "old snapshot still sees the old values after the update");
  const fresh = store.acquire();
  t.equal(fresh.version, 1, "new snapshot reports version 1");
  t.same(values(fresh), [[101, 102, 103, 104], [110, 120], [107]], "new snapshot sees the updated values");
  t.same(fresh.tensors.map((x) => x.shape), [[2, 2], [2], []], "copied generation keeps names' shapes");
  t.same(fresh.tensors.map((x) => x.name), ["w", "b", "s"], "and names in order");
  // a second update while both are held
  store.update(addAll(1));
  t.same(values(old), [[1, 2, 3, 4], [10, 20], [7]], "version 0 snapshot unchanged after a second update");
  t.same(values(fresh), [[101, 102, 103, 104], [110, 120], [107]], "version 1 snapshot unchanged after a second update");
  old.release();
  old.release(); // idempotent
  fresh.release();
  const last = store.acquire();
  t.same(values(last), [[102, 103, 104, 105], [111, 121], [108]], "latest is initial + 101");
  last.release();
});

t.test("100 update + overlapping-snapshot cycles stay correct and reuse a bounded set of buffers", async (t) => {
  const store = new ParameterStore();
  store.initialize(params());
  const buffers = new Set<Float32Array>();
  let prev: Snapshot | undefined;
  let wrong = 0;
  for (let i = 1; i <= 100; i++) {
    const s = store.acquire(); // holds version i−1 while the update runs
    buffers.add(s.tensors[0]!.data);
    store.update(addAll(1));
    // snapshot of version i−1 must still read initial + (i−1)
    if (s.tensors[0]!.data[0] !== 1 + (i - 1) || s.tensors[1]!.data[1] !== 20 + (i - 1)) wrong++;
    prev?.release(); // overlapping: release the previous cycle's snapshot only now
    prev = s;
  }
  prev?.release();
  t.equal(wrong, 0, "every held snapshot kept its version's values");
  t.equal(store.version, 100, "100 updates → version 100");
  const s = store.acquire();
  t.same(values(s), [[101, 102, 103, 104], [110, 120], [107]], "final values are initial + 100");
  s.release();
  // With at most two snapshots alive at once a handful of buffer sets suffice; 100 would mean no reuse.
  t.ok(buffers.size <= 4, `snapshots used ${buffers.size} distinct buffer sets over 100 cycles (≤ 4)`);
});

t.test("released buffers are recycled, and at most two spare sets are kept beyond spareBytes", async (t) => {
  // 7 values are 28 bytes a set: a 56-byte allowance is two sets.
  const store = new ParameterStore({ spareBytes: 56 });
  store.initialize(params());
  // Five snapshots on five distinct versions: each update must copy (spare pool empty → fresh buffers).
  const held = holdFiveVersions(store);
  const known = new Set(held.map((s) => s.tensors[0]!.data));
  t.equal(known.size, 5, "versions 0..4 each live in their own buffers");
  // Release them all: at most two of these sets may be kept for reuse.
  for (const s of held) s.release();
  // Now force three more copy-on-write updates, holding every version so nothing else is recycled.
  const r5 = store.acquire();
  known.add(r5.tensors[0]!.data);
  const reused: boolean[] = [];
  const keep: Snapshot[] = [r5];
  for (let i = 0; i < 3; i++) {
    store.update(addAll(1));
    const r = store.acquire();
    keep.push(r);
    reused.push(known.has(r.tensors[0]!.data));
    known.add(r.tensors[0]!.data);
  }
  t.equal(reused[0], true, "the first copy-on-write after releases reuses a released buffer set");
  t.ok(reused.filter(Boolean).length <= 2, `at most 2 of 3 copies reuse released sets (reused: ${reused})`);
  t.equal(reused[2], false, "the third copy gets fresh buffers: no more than two spares were kept");
  // and the values are right regardless: version 8 = initial + 8
  t.equal(keep[3]!.version, 8, "version 8");
  t.same(values(keep[3]!), [[9, 10, 11, 12], [18, 28], [15]], "values initial + 8");
  t.same(values(keep[0]!), [[6, 7, 8, 9], [15, 25], [12]], "held version 5 still initial + 5");
  for (const s of keep) s.release();
});

t.test("randomised acquire/update/release sequences match a reference model", async (t) => {
  let mismatches = 0;
  let firstMismatch = "";
  let operations = 0;
  for (let seed = 1; seed <= 30; seed++) {
    const rand = rng(seed);
    const store = new ParameterStore();
    store.initialize(params());
    // reference model: current values and version; each live snapshot with what it must show
    let model = values({ tensors: params() });
    let version = 0;
    const live: { snap: Snapshot; version: number; expect: number[][] }[] = [];
    const check = (cond: boolean, what: string) => {
      if (!cond) {
        mismatches++;
        firstMismatch ||= `seed ${seed}, op ${operations}: ${what}`;
      }
    };
    for (let step = 0; step < 300; step++) {
      operations++;
      const r = rand();
      if (r < 0.35) {
        const snap = store.acquire();
        check(snap.version === version, `acquire version ${snap.version} ≠ ${version}`);
        check(JSON.stringify(values(snap)) === JSON.stringify(model), "acquire sees current values");
        live.push({ snap, version, expect: model.map((a) => [...a]) });
      } else if (r < 0.75) {
        // update: add a random integer to a random subset of elements (integers keep float32 exact)
        const delta = 1 + Math.floor(rand() * 9);
        const which = Math.floor(rand() * 3);
        const next = store.update((ts) => {
          check(JSON.stringify(ts.map((x) => Array.from(x.data))) === JSON.stringify(model), "mutate sees current values");
          const d = ts[which]!.data;
          for (let i = 0; i < d.length; i += 1 + (delta % 2)) d[i] = d[i]! + delta;
        });
        const row = model[which]!;
        for (let i = 0; i < row.length; i += 1 + (delta % 2)) row[i] = row[i]! + delta;
        version++;
        check(next === version, `update returned ${next}, expected ${version}`);
      } else if (live.length > 0) {
        const k = Math.floor(rand() * live.length);
        const [gone] = live.splice(k, 1);
        gone!.snap.release();
        if (rand() < 0.2) gone!.snap.release(); // double release must be harmless
      }
      for (const l of live) {
        check(l.snap.version === l.version, "snapshot version stable");
        check(JSON.stringify(values(l.snap)) === JSON.stringify(l.expect), `snapshot of version ${l.version} unchanged`);
      }
    }
    for (const l of live) l.snap.release();
    const end = store.acquire();
    check(JSON.stringify(values(end)) === JSON.stringify(model), "final values match the model");
    check(store.version === version, "final version matches the model");
    end.release();
    model = [];
  }
  t.equal(mismatches, 0, `no divergence from the reference model over ${operations} random operations${firstMismatch ? ` (first: ${firstMismatch})` : ""}`);
});

t.test("parameters live in shared memory, for the step's helper threads, also after copy-on-write", async (t) => {
  const store = new ParameterStore();
  const given = params();
  store.initialize(given);
  const first = store.acquire();
  t.ok(first.tensors.every((x) => x.data.buffer instanceof SharedArrayBuffer), "after initialize");
  t.ok(first.tensors.every((x, i) => x.data.buffer !== given[i]!.data.buffer), "copies of what was given");
  store.update((ts) => ts.forEach((x) => x.data.fill(0))); // a reader holds the version: copy-on-write
  const second = store.acquire();
  t.not(second.tensors[0]!.data, first.tensors[0]!.data, "the update went to new buffers");
  t.ok(second.tensors.every((x) => x.data.buffer instanceof SharedArrayBuffer), "the new buffers are shared too");
  t.same(values(first), [[1, 2, 3, 4], [10, 20], [7]], "the held version is unchanged");
  first.release();
  second.release();
});

t.test("a small model keeps every released set up to spareBytes: answers holding many versions allocate nothing new", async (t) => {
  const store = new ParameterStore(); // 32 MiB: thousands of 28-byte sets
  store.initialize(params());
  const held = holdFiveVersions(store);
  const known = new Set(held.map((s) => s.tensors[0]!.data));
  for (const s of held) s.release();
  t.equal(store.snapshotsHeld, 0, "nothing held");
  // Four more copy-on-write updates, every version held: all four reuse released sets.
  const keep: Snapshot[] = [store.acquire()];
  known.add(keep[0]!.tensors[0]!.data);
  for (let i = 0; i < 4; i++) {
    store.update(addAll(1));
    keep.push(store.acquire());
  }
  t.equal(store.snapshotsHeld, 5, "five snapshots held");
  t.ok(keep.slice(1).every((s) => known.has(s.tensors[0]!.data)), "the four copies all went into released sets");
  t.same(values(keep[4]!), [[10, 11, 12, 13], [19, 29], [16]], "version 9 = initial + 9");
  for (const s of keep) s.release();
  t.equal(store.snapshotsHeld, 0, "all released");
});
