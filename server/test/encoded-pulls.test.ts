/**
 * EncodedPulls: a version's fp16/bf16 pull chunks are encoded once and shared; they are the bytes a
 * fresh encoding gives; an entry's memory goes to a later version only once no pull streams it.
 */
import t from "tap";
import { Dtype } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { frameTensorChunks } from "@distributed-ps/common/wire/grpc-framing.ts";
import { EncodedPulls } from "../src/wire/encoded-pulls.ts";
import { ParameterStore } from "../src/store/parameter-store.ts";

function store(): ParameterStore {
  const s = new ParameterStore();
  s.initialize([
    { name: "w", shape: [3, 5], data: Float32Array.from({ length: 15 }, (_, i) => i / 7 - 1) },
    { name: "b", shape: [5], data: Float32Array.from({ length: 5 }, (_, i) => i * 0.1) },
  ]);
  return s;
}

const bytesOf = (chunks: readonly (readonly [Buffer, Uint8Array])[]) => Buffer.concat(chunks.flatMap(([p, d]) => [p, d]));

t.test("one encoding per version and dtype, equal to encoding afresh", async (t) => {
  const s = store();
  const pulls = new EncodedPulls();
  const snap = s.acquire();
  const a = pulls.acquire(snap, Dtype.FLOAT16, 16);
  const b = pulls.acquire(snap, Dtype.FLOAT16, 16);
  t.equal(a.chunks, b.chunks, "the second pull of the version streams the same chunks");
  const fresh = snap.tensors.flatMap((x) => [...frameTensorChunks(x, Dtype.FLOAT16, 16)]);
  t.same(bytesOf(a.chunks), bytesOf(fresh), "byte for byte what encoding afresh gives");
  t.ok(a.chunks.length > 2, "several chunks per tensor (16-byte chunks)");
  const bf = pulls.acquire(snap, Dtype.BFLOAT16, 16);
  t.not(bf.chunks, a.chunks, "bf16 is encoded separately");
  t.same(bytesOf(bf.chunks), bytesOf(snap.tensors.flatMap((x) => [...frameTensorChunks(x, Dtype.BFLOAT16, 16)])), "and correctly");
  t.throws(() => pulls.acquire(snap, Dtype.FLOAT32, 16), RangeError, "float32 needs no encoding (it is sent as views)");
  for (const r of [a, b, bf]) r.release();
  snap.release();
});

t.test("a newer version is encoded anew; an old one stays intact while a pull still streams it", async (t) => {
  const s = store();
  const pulls = new EncodedPulls();
  const v0 = s.acquire();
  const old = pulls.acquire(v0, Dtype.FLOAT16, 16);
  const oldBytes = bytesOf(old.chunks);
  s.update((ts) => ts.forEach((x) => x.data.fill(0.5)));
  const v1 = s.acquire();
  const next = pulls.acquire(v1, Dtype.FLOAT16, 16);
  t.not(next.chunks, old.chunks, "version 1 has its own chunks");
  t.same(bytesOf(old.chunks), oldBytes, "version 0's bytes are untouched while its pull streams");
  t.same(bytesOf(next.chunks), bytesOf(v1.tensors.flatMap((x) => [...frameTensorChunks(x, Dtype.FLOAT16, 16)])), "version 1's bytes are version 1's");
  old.release();
  next.release();
  v0.release();
  v1.release();

  // Version 0's entry is gone now; its memory serves version 2.
  s.update((ts) => ts.forEach((x) => x.data.fill(-2)));
  const v2 = s.acquire();
  const latest = pulls.acquire(v2, Dtype.FLOAT16, 16);
  t.equal(latest.chunks[0]![1].buffer, old.chunks[0]![1].buffer, "version 2 reuses the memory version 0 had");
  t.same(bytesOf(latest.chunks), bytesOf(v2.tensors.flatMap((x) => [...frameTensorChunks(x, Dtype.FLOAT16, 16)])), "and holds version 2's values");
  latest.release();
  v2.release();
});
