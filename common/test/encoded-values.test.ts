import t from "tap";
import { bytesPerValue, EncodedValues } from "../src/encoded-values.ts";

t.test("EncodedValues copies whole values in order and hands back any range of them", async (t) => {
  const storage = new Uint8Array(12);
  const e = new EncodedValues("float16", 6, storage);
  const sent = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  e.append(sent.subarray(0, 2));
  e.append(sent.subarray(2, 10));
  t.equal(e.received, 5);
  t.same(e.bytes(1, 3), sent.subarray(2, 8), "values 1..3");
  e.append(sent.subarray(10));
  sent.fill(0); // the sender's buffer is reused: the kept values are copies
  t.same(e.bytes(0, 6), Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]), "all six, copied");
  t.equal(e.bytes(0, 6).buffer, storage.buffer, "kept in the storage given");
  t.same([bytesPerValue("float32"), bytesPerValue("float16"), bytesPerValue("bfloat16")], [4, 2, 2]);
});

t.test("EncodedValues refuses what does not fit", async (t) => {
  t.throws(() => new EncodedValues("float32", 3, new Uint8Array(8)), /8 bytes of storage for 3 float32 values/);
  const e = new EncodedValues("float32", 2, new Uint8Array(8));
  t.throws(() => e.append(new Uint8Array(6)), /6 bytes are not whole float32 values/);
  t.throws(() => e.append(new Uint8Array(12)), /3 values for a tensor of 2/);
  e.append(new Uint8Array(4));
  t.throws(() => e.bytes(0, 2), /values \[0, 2\) requested, 1 received/);
  t.throws(() => e.bytes(-1, 1), /values \[-1, 0\) requested/);
});

t.test("EncodedValues.received wraps values already in storage, all of them readable", async (t) => {
  const storage = new Uint8Array(new SharedArrayBuffer(6));
  storage.set([1, 2, 3, 4, 5, 6]);
  const e = EncodedValues.received("bfloat16", storage);
  t.equal(e.length, 3);
  t.equal(e.received, 3);
  t.same(e.bytes(1, 2), Uint8Array.from([3, 4, 5, 6]));
  t.equal(e.bytes(0, 3).buffer, storage.buffer, "the storage itself, not a copy");
  t.throws(() => e.append(new Uint8Array(2)), /4 values for a tensor of 3/, "nothing more fits");
  t.throws(() => EncodedValues.received("float32", new Uint8Array(6)), /6 bytes are not whole float32 values/);
});

t.test("EncodedValues keeps values in shared memory, from pieces at any byte offset", async (t) => {
  const e = new EncodedValues("float16", 5, new Uint8Array(new SharedArrayBuffer(10)));
  const sent = Uint8Array.from([9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 9]);
  e.append(sent.subarray(1, 3)); // a whole-source copy of a view
  e.append(Uint8Array.from([3, 4, 5, 6])); // a whole buffer
  e.append(sent.subarray(7, 11));
  t.same(e.bytes(0, 5), Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
});
