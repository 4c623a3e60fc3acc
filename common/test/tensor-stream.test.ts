import t, { type Test } from "tap";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Dtype, TensorChunkSchema, type TensorChunk } from "../src/gen/paramserver/v1/parameter_server_pb.js";
import { valueFormat } from "../src/dtype.ts";
import { bytesPerValue, EncodedValues } from "../src/encoded-values.ts";
import type { NamedTensor } from "../src/named-tensor.ts";
import { chunkTensors } from "../src/tensor-stream/chunk-tensors.ts";
import { TensorAssembler } from "../src/tensor-stream/tensor-assembler.ts";
import { TensorCollector } from "../src/tensor-stream/tensor-collector.ts";
import { TensorStreamError } from "../src/tensor-stream/tensor-stream-error.ts";

const LIMITS = { maxElements: 1_000_000, maxTensors: 100 };

function tensor(name: string, shape: number[], values: number[]): NamedTensor {
  return { name, shape, data: Float32Array.from(values) };
}

/** A few tensors of awkward sizes: 7 elements = 28 bytes (3 chunks of 10 bytes at fp32), a scalar, a 2x3 matrix, an empty one. */
function sample(): NamedTensor[] {
  return [
    tensor("dense/kernel", [7], [0.5, -1.25, 3, 100.75, -0.001, 42, 7]),
    tensor("scalar", [], [-6.5]),
    tensor("dense/bias", [2, 3], [1, 2, 3, -4, -5, -6]),
    tensor("empty", [0, 4], []),
  ];
}

function chunk(init: MessageInitShape<typeof TensorChunkSchema>): TensorChunk {
  return create(TensorChunkSchema, init);
}

function f32bytes(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

/** An assembler that decodes every tensor into a fresh buffer of the announced shape. */
function assembler(options: { allowNonFinite?: boolean } = {}) {
  const out = new Map<string, Float32Array>();
  const a = new TensorAssembler((name, shape) => {
    const into = new Float32Array(shape.reduce((n, d) => n * d, 1));
    out.set(name, into);
    return { shape, into };
  }, options);
  return { a, out };
}

/** Runs `fn`, asserts it throws a TensorStreamError whose message matches `pattern`. */
function refuses(t: Test, fn: () => void, pattern: RegExp, what: string) {
  try {
    fn();
    t.fail(`${what}: expected a TensorStreamError, nothing was thrown`);
  } catch (err) {
    t.type(err, TensorStreamError, `${what}: throws TensorStreamError`);
    t.match((err as Error).message, pattern, `${what}: message says what was wrong`);
  }
}

t.test("chunkTensors cuts each tensor into pieces of at most chunkBytes, first chunk carries shape and dtype", async (t) => {
  const chunks = [...chunkTensors(sample(), Dtype.FLOAT32, 10)];
  // dense/kernel: 7 elems, floor(10/4)=2 per chunk -> 4 chunks (2,2,2,1); scalar: 1; bias: 6 elems -> 3; empty: 1 chunk of 0 bytes
  t.equal(chunks.length, 4 + 1 + 3 + 1, "4 + 1 + 3 + 1 = 9 chunks");
  const kernel = chunks.filter((c) => c.name === "dense/kernel");
  t.same(kernel.map((c) => Number(c.byteOffset)), [0, 8, 16, 24], "kernel chunks at byte 0, 8, 16, 24");
  t.same(kernel.map((c) => c.data.length), [8, 8, 8, 4], "kernel chunk sizes 8, 8, 8, 4 bytes");
  t.same(kernel[0]!.shape, [7], "first chunk carries the shape");
  t.equal(kernel[0]!.dtype, Dtype.FLOAT32, "first chunk carries the dtype");
  t.same(kernel[1]!.shape, [], "later chunks carry no shape");
  t.equal(kernel[1]!.dtype, Dtype.UNSPECIFIED, "later chunks carry no dtype");
  const empty = chunks.filter((c) => c.name === "empty");
  t.equal(empty.length, 1, "a zero-size tensor still sends one chunk (to announce its shape)");
  t.equal(empty[0]!.data.length, 0, "that chunk has no payload");
  t.same(empty[0]!.shape, [0, 4], "and carries the shape [0, 4]");

  const half = [...chunkTensors(sample(), Dtype.FLOAT16, 10)];
  // fp16: 5 per chunk -> kernel 2 chunks (5,2), scalar 1, bias 2 (5,1), empty 1
  t.equal(half.length, 2 + 1 + 2 + 1, "fp16 halves the bytes: 6 chunks");
  t.same(
    half.filter((c) => c.name === "dense/bias").map((c) => [Number(c.byteOffset), c.data.length]),
    [[0, 10], [10, 2]],
    "bias as fp16: 10 bytes at 0, 2 bytes at 10",
  );

  refuses(t, () => [...chunkTensors([tensor("bad", [2, 2], [1, 2, 3])])], /"bad" has 3 elements but shape \[2,2\]/, "data/shape mismatch");
});

t.test("chunkTensors + TensorCollector round trip for every dtype with 10-byte chunks", async (t) => {
  for (const [dtype, relTol] of [
    [Dtype.FLOAT32, 0],
    [Dtype.FLOAT16, 2 ** -11], // half an fp16 ulp, relative
    [Dtype.BFLOAT16, 2 ** -8], // half a bf16 ulp, relative
  ] as const) {
    const src = sample();
    const collector = new TensorCollector(LIMITS);
    for (const c of chunkTensors(src, dtype, 10)) collector.add(c);
    const got = collector.finish(src.length);
    t.same(got.map((x) => x.name), src.map((x) => x.name), `${Dtype[dtype]}: names in order`);
    t.same(got.map((x) => x.shape), src.map((x) => x.shape), `${Dtype[dtype]}: shapes preserved (scalar [] and empty [0,4] included)`);
    for (let k = 0; k < src.length; k++) {
      const a = src[k]!.data;
      const b = got[k]!.data;
      t.equal(b.length, a.length, `${Dtype[dtype]} ${src[k]!.name}: ${a.length} elements`);
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(b[i]! - a[i]!) / Math.abs(a[i]!));
      t.ok(worst <= relTol, `${Dtype[dtype]} ${src[k]!.name}: worst relative error ${worst} <= ${relTol}`);
    }
  }
  // Lossy values checked by hand (bf16 keeps the upper 16 bits of the float32, ties to even):
  //   100.75 = 0x42c98000: tie between 0x42c9 (odd) and 0x42ca -> 0x42ca = (1 + 74/128) * 64 = 101
  //   -0.001 = 0xba83126f: low half 0x126f < 0x8000 -> 0xba83 = -(1 + 3/128) * 2^-10 = -0.00099945068359375
  const c = new TensorCollector(LIMITS);
  for (const ch of chunkTensors([tensor("x", [2], [100.75, -0.001])], Dtype.BFLOAT16, 2)) c.add(ch);
  const [x] = c.finish(1);
  t.equal(x!.data[0], 101, "bf16: 100.75 rounds (tie to even) to 101");
  t.equal(x!.data[1], -0.00099945068359375, "bf16: -0.001 rounds down to -0.00099945068359375");
});

t.test("protobuf round trip: decoded chunks (data views at arbitrary offsets) reassemble exactly", async (t) => {
  for (const dtype of [Dtype.FLOAT32, Dtype.FLOAT16, Dtype.BFLOAT16]) {
    const src = sample();
    const expected = new Map<string, number[]>();
    // reference: what one direct (no protobuf) pass produces
    const direct = new TensorCollector(LIMITS);
    for (const c of chunkTensors(src, dtype, 10)) direct.add(c);
    for (const x of direct.finish(src.length)) expected.set(x.name, Array.from(x.data));

    const { a, out } = assembler();
    const offsets = new Set<number>();
    for (const c of chunkTensors(src, dtype, 10)) {
      const wire = toBinary(TensorChunkSchema, c);
      const decoded = fromBinary(TensorChunkSchema, wire);
      if (decoded.data.length > 0) {
        offsets.add(decoded.data.byteOffset % 4);
        t.ok(decoded.data.buffer === wire.buffer, "decoded data is a view into the wire buffer, not a copy");
      }
      a.add(decoded);
    }
    a.finish(src.length);
    t.ok([...offsets].some((o) => o !== 0), `${Dtype[dtype]}: at least one payload sat at a non-4-aligned byte offset (${[...offsets]})`);
    t.same([...a.received], src.map((x) => x.name), `${Dtype[dtype]}: every tensor received, in order`);
    for (const x of src) t.same(Array.from(out.get(x.name)!), expected.get(x.name), `${Dtype[dtype]} ${x.name}: same values as without protobuf`);
  }
  // and float32 is bit-exact against the source
  const { a, out } = assembler();
  for (const c of chunkTensors(sample(), Dtype.FLOAT32, 10)) a.add(fromBinary(TensorChunkSchema, toBinary(TensorChunkSchema, c)));
  t.same(Array.from(out.get("dense/kernel")!), [0.5, -1.25, 3, 100.75, Math.fround(-0.001), 42, 7], "fp32 kernel is bit-exact after protobuf");
  t.same(Array.from(out.get("scalar")!), [-6.5], "fp32 scalar is exact after protobuf");
});

t.test("TensorAssembler refuses malformed streams with TensorStreamError", async (t) => {
  // kernel: 7 fp32 elements = 28 bytes in chunks at 0, 8, 16, 24
  const kernel = () => [...chunkTensors([tensor("k", [7], [1, 2, 3, 4, 5, 6, 7])], Dtype.FLOAT32, 8)];
  const other = () => [...chunkTensors([tensor("o", [2], [1, 2])], Dtype.FLOAT32, 4)];

  t.test("chunks out of order", async (t) => {
    const [c0, c1, c2] = kernel();
    const { a } = assembler();
    a.add(c0!);
    refuses(t, () => a.add(c2!), /"k": chunk at byte 16, expected byte 8 \(chunks out of order or missing\)/, "chunk 2 before chunk 1");
    void c1;
  });

  t.test("a missing chunk (gap)", async (t) => {
    const [c0, c1, , c3] = kernel();
    const { a } = assembler();
    a.add(c0!);
    a.add(c1!);
    refuses(t, () => a.add(c3!), /chunk at byte 24, expected byte 16/, "chunk 3 right after chunk 1");
  });

  t.test("a tensor sent twice", async (t) => {
    const { a } = assembler();
    for (const c of other()) a.add(c);
    refuses(t, () => a.add(other()[0]!), /tensor "o" sent twice/, "second copy of o");
  });

  t.test("another tensor begins before the current one completed", async (t) => {
    const { a } = assembler();
    a.add(kernel()[0]!);
    refuses(t, () => a.add(other()[0]!), /tensor "k" ended after 8 of 28 bytes when "o" began/, "first chunk of o inside k");
  });

  t.test("a non-first chunk of another tensor arrives mid-tensor", async (t) => {
    const { a } = assembler();
    a.add(kernel()[0]!);
    refuses(t, () => a.add(other()[1]!), /chunk of tensor "o" arrived while tensor "k" was incomplete/, "second chunk of o inside k");
  });

  t.test("a stream ends mid-tensor", async (t) => {
    const [c0, c1] = kernel();
    const { a } = assembler();
    a.add(c0!);
    a.add(c1!);
    refuses(t, () => a.finish(1), /stream ended inside tensor "k" after 16 of 28 bytes/, "finish after 2 of 4 chunks");
  });

  t.test("fewer or more tensors than announced", async (t) => {
    const { a } = assembler();
    for (const c of [...kernel(), ...other()]) a.add(c);
    refuses(t, () => a.finish(3), /stream carried 2 tensors, header announced 3/, "2 sent, 3 announced");
    refuses(t, () => a.finish(1), /stream carried 2 tensors, header announced 1/, "2 sent, 1 announced");
    t.doesNotThrow(() => a.finish(2), "2 sent, 2 announced is fine");
  });

  t.test("a byte length that is not a multiple of the element size", async (t) => {
    const { a } = assembler();
    refuses(
      t,
      () => a.add(chunk({ name: "k", shape: [2], dtype: Dtype.FLOAT32, byteOffset: 0n, data: new Uint8Array(6) })),
      /"k": chunk of 6 bytes is not a whole number of 4-byte elements/,
      "6 bytes of float32",
    );
    const b = assembler().a;
    refuses(
      t,
      () => b.add(chunk({ name: "h", shape: [4], dtype: Dtype.FLOAT16, byteOffset: 0n, data: new Uint8Array(3) })),
      /chunk of 3 bytes is not a whole number of 2-byte elements/,
      "3 bytes of float16",
    );
  });

  t.test("more bytes than the shape holds", async (t) => {
    const { a } = assembler();
    // shape [2] of float32 holds 8 bytes; 12 are sent in one chunk
    refuses(
      t,
      () => a.add(chunk({ name: "k", shape: [2], dtype: Dtype.FLOAT32, byteOffset: 0n, data: f32bytes([1, 2, 3]) })),
      /"k": 12 bytes sent, shape holds 8/,
      "12 bytes into an 8-byte tensor",
    );
    // the same overflow spread over two chunks: 8 bytes complete the tensor, so the extra arrives as a later chunk
    const b = assembler().a;
    b.add(chunk({ name: "k", shape: [3], dtype: Dtype.FLOAT32, byteOffset: 0n, data: f32bytes([1, 2]) }));
    refuses(t, () => b.add(chunk({ name: "k", byteOffset: 8n, data: f32bytes([3, 4]) })), /"k": 16 bytes sent, shape holds 12/, "second chunk overruns");
  });

  t.test("NaN and Inf are refused unless allowNonFinite", async (t) => {
    for (const [bad, label] of [
      [NaN, "NaN"],
      [Infinity, "+Inf"],
      [-Infinity, "-Inf"],
    ] as const) {
      for (const dtype of [Dtype.FLOAT32, Dtype.FLOAT16, Dtype.BFLOAT16]) {
        const chunks = [...chunkTensors([tensor("g", [4], [1, 2, bad, 4])], dtype, 1 << 20)];
        const { a } = assembler();
        refuses(t, () => a.add(chunks[0]!), /"g": 1 NaN or infinite value\(s\) near element 0/, `${label} as ${Dtype[dtype]}`);
        const ok = assembler({ allowNonFinite: true });
        ok.a.add(chunks[0]!);
        ok.a.finish(1);
        const v = ok.out.get("g")![2]!;
        t.ok(Number.isNaN(bad) ? Number.isNaN(v) : v === bad, `${label} as ${Dtype[dtype]} accepted with allowNonFinite and decoded as ${label}`);
      }
    }
    // a value that overflows fp16 becomes Inf on the wire and is refused on arrival
    const { a } = assembler();
    const [c] = [...chunkTensors([tensor("g", [2], [1, 1e5])], Dtype.FLOAT16)];
    refuses(t, () => a.add(c!), /NaN or infinite/, "1e5 overflows fp16 to Inf");
    // the element index in the message is that of the chunk's first element
    const b = assembler().a;
    const cs = [...chunkTensors([tensor("g", [4], [1, 2, 3, NaN])], Dtype.FLOAT32, 8)];
    b.add(cs[0]!);
    refuses(t, () => b.add(cs[1]!), /1 NaN or infinite value\(s\) near element 2/, "NaN in the second chunk reported near element 2");
  });

  t.test("an unsupported dtype (UNSPECIFIED) on the first chunk", async (t) => {
    const { a } = assembler();
    refuses(
      t,
      () => a.add(chunk({ name: "k", shape: [1], dtype: Dtype.UNSPECIFIED, byteOffset: 0n, data: f32bytes([1]) })),
      /"k": unsupported dtype UNSPECIFIED/,
      "dtype UNSPECIFIED",
    );
  });

  t.test("a dtype change mid-tensor", async (t) => {
    const { a } = assembler();
    a.add(chunk({ name: "k", shape: [2], dtype: Dtype.FLOAT32, byteOffset: 0n, data: f32bytes([1]) }));
    refuses(
      t,
      () => a.add(chunk({ name: "k", dtype: Dtype.FLOAT16, byteOffset: 4n, data: new Uint8Array(4) })),
      /dtype changed from FLOAT32 to FLOAT16 mid-tensor/,
      "FLOAT32 then FLOAT16",
    );
  });

  t.test("a chunk before any first chunk (offset > 0 first)", async (t) => {
    const { a } = assembler();
    refuses(t, () => a.add(kernel()[1]!), /chunk of tensor "k" at byte 8 arrived before its first chunk/, "stream starting at byte 8");
  });

  t.test("a chunk without a name, and an empty chunk mid-tensor", async (t) => {
    const { a } = assembler();
    refuses(t, () => a.add(chunk({ shape: [1], dtype: Dtype.FLOAT32, data: f32bytes([1]) })), /chunk 1 has no tensor name/, "nameless chunk");
    const b = assembler().a;
    b.add(chunk({ name: "k", shape: [2], dtype: Dtype.FLOAT32, byteOffset: 0n, data: f32bytes([1]) }));
    refuses(t, () => b.add(chunk({ name: "k", byteOffset: 4n, data: new Uint8Array(0) })), /"k": empty chunk at byte 4/, "empty chunk");
  });

  t.test("expect() may refuse, and the buffer it returns must fit the shape", async (t) => {
    const a = new TensorAssembler((name) => {
      throw new TensorStreamError(`unknown tensor "${name}"`);
    });
    refuses(t, () => a.add(other()[0]!), /unknown tensor "o"/, "expect() refusal propagates");
    const b = new TensorAssembler((_name, shape) => ({ shape, into: new Float32Array(3) }));
    refuses(t, () => b.add(other()[0]!), /"o": buffer holds 3 elements, shape needs 2/, "wrong-size destination");
  });
});

t.test("TensorCollector enforces its limits", async (t) => {
  const two = [tensor("a", [3], [1, 2, 3]), tensor("b", [2], [4, 5])];
  const fewTensors = new TensorCollector({ maxElements: 100, maxTensors: 1 });
  const chunks = [...chunkTensors(two)];
  fewTensors.add(chunks[0]!);
  refuses(t, () => fewTensors.add(chunks[1]!), /more than 1 tensors/, "second tensor beyond maxTensors 1");
  // 3 + 2 = 5 elements > maxElements 4
  const fewElements = new TensorCollector({ maxElements: 4, maxTensors: 10 });
  fewElements.add(chunks[0]!);
  refuses(t, () => fewElements.add(chunks[1]!), /tensor "b" takes the stream past 4 elements/, "3 + 2 elements beyond maxElements 4");
});

t.test("sparse tensors: round trip, and refusals", async (t) => {
  const sparse = { name: "g", shape: [2, 5], indices: Uint32Array.from([1, 4, 9]), values: Float32Array.from([0.5, -2, 3]) };
  const dense = { name: "b", shape: [2], data: Float32Array.from([7, 8]) };
  const collector = new TensorCollector({ maxElements: 100, maxTensors: 10 });
  for (const chunk of chunkTensors([sparse, dense], Dtype.FLOAT32, 8)) collector.add(fromBinary(TensorChunkSchema, toBinary(TensorChunkSchema, chunk)));
  const [g, b] = collector.finish(2);
  t.same(Array.from(g!.data), [0, 0.5, 0, 0, -2, 0, 0, 0, 0, 3], "the sparse tensor arrives dense, zeros elsewhere");
  t.same(Array.from(b!.data), [7, 8], "a dense tensor after it is unaffected");

  const refuse = (what: string, chunks: Parameters<TensorAssembler["add"]>[0][], re: RegExp) => {
    const a = new TensorAssembler(() => ({ shape: [10], into: new Float32Array(10) }));
    t.throws(() => chunks.forEach((c) => a.add(c)), re, what);
  };
  const base = { name: "g", shape: [10], dtype: Dtype.FLOAT32, sparse: true, sparseCount: 1, byteOffset: 0n };
  refuse("an index outside the tensor", [create(TensorChunkSchema, { ...base, indices: new Uint8Array(Uint32Array.from([10]).buffer), data: new Uint8Array(Float32Array.from([1]).buffer) })], /index 10 outside its 10 elements/);
  refuse("more values than elements", [create(TensorChunkSchema, { ...base, sparseCount: 11, indices: new Uint8Array(0), data: new Uint8Array(0) })], /11 values for 10 elements/);
  refuse("indices and values of different counts", [create(TensorChunkSchema, { ...base, indices: new Uint8Array(8), data: new Uint8Array(Float32Array.from([1]).buffer) })], /2 indices for 1 values/);
});

/** `data` cut into `size`-byte pieces, each a view of a buffer of its own (as socket reads are). */
function piecesOf(data: Uint8Array, size: number): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  for (let at = 0; at < data.length; at += size) pieces.push(data.slice(at, Math.min(data.length, at + size)));
  return pieces;
}

t.test("TensorAssembler in pieces: elements split between pieces, sparse chunks joined, and its own refusals", async (t) => {
  for (const dtype of [Dtype.FLOAT32, Dtype.FLOAT16, Dtype.BFLOAT16]) {
    const values = [0.5, -1.25, 3, 100, 42, 7]; // exact in every dtype
    const data = [...chunkTensors([tensor("v", [6], values)], dtype, 1 << 20)][0]!.data;
    const { a, out } = assembler();
    a.addPieces({ name: "v", shape: [6], dtype, byteOffset: 0n, sparse: false, sparseCount: 0, indices: new Uint8Array(0) }, piecesOf(data, 3), data.length);
    a.finish(1);
    t.same(Array.from(out.get("v")!), values, `${Dtype[dtype]}: 3-byte pieces decode exactly`);
  }
  const into = new Float32Array(6).fill(9);
  const sparse = new TensorAssembler((_name, shape) => ({ shape, into }));
  const sparseValues = new Uint8Array(Float32Array.of(1.5, -2).buffer);
  sparse.addPieces({ name: "s", shape: [6], dtype: Dtype.FLOAT32, byteOffset: 0n, sparse: true, sparseCount: 2, indices: new Uint8Array(Uint32Array.of(4, 1).buffer) }, piecesOf(sparseValues, 3), 8);
  t.same(Array.from(into), [0, -2, 0, 0, 1.5, 0], "a sparse chunk in 3-byte pieces: its values at its indices, zeros elsewhere");
  const framing = { name: "v", shape: [2], dtype: Dtype.FLOAT32, byteOffset: 0n, sparse: false, sparseCount: 0, indices: new Uint8Array(0) };
  refuses(t, () => assembler().a.addPieces(framing, [new Uint8Array(4), new Uint8Array(8)], 8), /more than the announced 8 bytes/, "more data than announced");
  refuses(t, () => assembler().a.addPieces(framing, [new Uint8Array(5)], 8), /ended after 5 of its 8 bytes/, "less data than announced");
});

/** An assembler that keeps every tensor encoded, as the server keeps pushed gradients. */
function keepingAssembler() {
  const kept = new Map<string, EncodedValues>();
  const a = new TensorAssembler((name, shape, encoding) => {
    const length = shape.reduce((n, d) => n * d, 1);
    const format = valueFormat(encoding.dtype);
    const keep = new EncodedValues(format, length, new Uint8Array(length * bytesPerValue(format)));
    kept.set(name, keep);
    return { shape, keep };
  });
  return { a, kept };
}

t.test("TensorAssembler keeps tensors encoded: the bytes as sent, split elements included, checked for NaN/Inf", async (t) => {
  for (const dtype of [Dtype.FLOAT32, Dtype.FLOAT16, Dtype.BFLOAT16]) {
    const values = [0.5, -1.25, 3, 100, 42, 7, -0.0078125];
    const sent = [...chunkTensors([tensor("v", [7], values)], dtype, 1 << 20)][0]!.data;
    // Whole chunks (the Connect path) and 3-byte pieces that split elements (a socket's reads).
    const whole = keepingAssembler();
    for (const c of chunkTensors([tensor("v", [7], values)], dtype, 4)) whole.a.add(c);
    whole.a.finish(1);
    t.same(whole.kept.get("v")!.bytes(0, 7), sent, `${Dtype[dtype]}: whole chunks kept byte for byte`);
    const pieces = keepingAssembler();
    pieces.a.addPieces({ name: "v", shape: [7], dtype, byteOffset: 0n, sparse: false, sparseCount: 0, indices: new Uint8Array(0) }, piecesOf(sent, 3), sent.length);
    pieces.a.finish(1);
    t.same(pieces.kept.get("v")!.bytes(0, 7), sent, `${Dtype[dtype]}: 3-byte pieces kept byte for byte`);

    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
      const { a } = keepingAssembler();
      const c = [...chunkTensors([tensor("v", [7], [1, 2, bad, 4, bad, 6, 7])], dtype, 1 << 20)][0]!;
      refuses(t, () => a.add(c), /tensor "v": 2 NaN or infinite value\(s\)/, `${Dtype[dtype]}: ${bad} refused while kept`);
    }
  }
  // The receiver's own mistakes are programming errors, not the sender's.
  const wrongFormat = new TensorAssembler((_name, shape) => ({ shape, keep: new EncodedValues("float16", 2, new Uint8Array(4)) }));
  t.throws(() => wrongFormat.add(chunk({ name: "v", shape: [2], dtype: Dtype.FLOAT32, byteOffset: 0n, data: f32bytes([1, 2]) })), /kept as float16, sent as FLOAT32/);
  const sparse = [...chunkTensors([{ name: "s", shape: [4], indices: Uint32Array.from([2]), values: Float32Array.from([1]) }], Dtype.FLOAT32)];
  const keepSparse = new TensorAssembler((_name, shape) => ({ shape, keep: new EncodedValues("float32", 4, new Uint8Array(16)) }));
  t.throws(() => keepSparse.add(sparse[0]!), /kept as float32, sent as sparse FLOAT32/);
});
