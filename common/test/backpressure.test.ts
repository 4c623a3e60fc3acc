/**
 * writeWithBackpressure: small writes go out together (corked), large ones in slices that wait for
 * the stream to drain, nothing is written to a closed stream — against a recording stand-in stream
 * (what node:http2 then does with the writes is covered by every test that moves tensors).
 */
import { EventEmitter } from "node:events";
import t from "tap";
import { WRITE_SLICE_BYTES, writeWithBackpressure, type DrainableStream } from "../src/wire/backpressure.ts";

/** A stream that records its calls; write() reports "full" for pieces of `fullFrom` bytes or more. */
class Recorder extends EventEmitter implements DrainableStream {
  destroyed = false;
  closed = false;
  readonly calls: string[] = [];
  readonly fullFrom: number;
  constructor(fullFrom = Number.POSITIVE_INFINITY) {
    super();
    this.fullFrom = fullFrom;
  }
  write(data: Uint8Array): boolean {
    this.calls.push(`write ${data.length}`);
    return data.length < this.fullFrom;
  }
  cork(): void {
    this.calls.push("cork");
  }
  uncork(): void {
    this.calls.push("uncork");
  }
}

const bytes = (n: number) => new Uint8Array(n);

t.test("pieces of at most WRITE_SLICE_BYTES in all are written corked, as one writev", async (t) => {
  const s = new Recorder();
  await writeWithBackpressure(s, [bytes(5), bytes(100), bytes(WRITE_SLICE_BYTES - 105)]);
  t.same(s.calls, ["cork", "write 5", "write 100", `write ${WRITE_SLICE_BYTES - 105}`, "uncork"]);
});

t.test("corked writes that fill the stream wait for its drain once", async (t) => {
  const s = new Recorder(100);
  let settled = false;
  const done = writeWithBackpressure(s, [bytes(5), bytes(200)]).then(() => (settled = true));
  await new Promise((r) => setImmediate(r));
  t.notOk(settled, "waiting for 'drain'");
  s.emit("drain");
  await done;
  t.same(s.calls, ["cork", "write 5", "write 200", "uncork"], "written together all the same");
});

t.test("more than WRITE_SLICE_BYTES: each piece on its own, in slices, waiting for drain when full", async (t) => {
  const s = new Recorder(WRITE_SLICE_BYTES);
  const done = writeWithBackpressure(s, [bytes(5), bytes(WRITE_SLICE_BYTES + 10)]);
  for (let i = 0; i < 5 && s.calls.length < 3; i++) await new Promise((r) => setImmediate(r));
  t.same(s.calls, ["write 5", `write ${WRITE_SLICE_BYTES}`], "the first slice, then a wait");
  s.emit("drain");
  await done;
  t.same(s.calls, ["write 5", `write ${WRITE_SLICE_BYTES}`, "write 10"], "then the rest");
});

t.test("a closed stream is not written to, and a stream that closes while full ends the wait", async (t) => {
  const closed = new Recorder();
  closed.closed = true;
  await writeWithBackpressure(closed, [bytes(5), bytes(5)]);
  t.same(closed.calls, [], "nothing written");
  const s = new Recorder(1);
  const done = writeWithBackpressure(s, [bytes(5), bytes(5)]);
  s.emit("close");
  await done;
  t.pass("the write ended with the stream");
});
