/**
 * What a worker sends with Finish for the exported model: its state tensors whole, as float32
 * bytes, and the inference graph; nothing (with a warning, the run still finishing) when they would
 * not fit in one message or the model has no graph.
 */
import t from "tap";
import { createLogger } from "@distributed-ps/common/log.ts";
import type { TrainingEngine } from "../src/model/engine.ts";
import { modelExtras } from "../src/model-extras.ts";

function engine(graph: () => Uint8Array, state = [{ name: "bn/moving_mean", shape: [3], data: new Float32Array([1, 2, 3]) }]): TrainingEngine {
  return { inferenceGraph: graph, nonTrainableState: () => state } as unknown as TrainingEngine;
}

function logger() {
  const lines: string[] = [];
  return { log: createLogger("worker", "info", (line) => lines.push(line)), lines };
}

t.test("state as whole float32 tensors, and the graph", (t) => {
  const { log, lines } = logger();
  const extras = modelExtras(engine(() => new Uint8Array([1, 2, 3])), 1 << 20, log);
  t.same(extras?.inferenceGraph, new Uint8Array([1, 2, 3]));
  const [mean] = extras?.state ?? [];
  t.match(mean, { name: "bn/moving_mean", shape: [3], byteOffset: 0n });
  t.same(Array.from(new Float32Array(new Uint8Array(mean!.data!).buffer)), [1, 2, 3], "the values, little-endian float32");
  t.same(lines, [], "no warning");
  t.end();
});

t.test("too large for one message, or no graph: nothing sent, one warning saying why", (t) => {
  const big = logger();
  t.equal(modelExtras(engine(() => new Uint8Array(2000)), 1024, big.log), undefined);
  t.match(big.lines.join("\n"), /\(2000 bytes, at most 4194304\) and state \(\d+ bytes in all, at most 1024 in one message\) do not fit: the server will not export model.onnx/);
  const none = logger();
  t.equal(modelExtras(engine(() => { throw new Error('layer "drop" (Dropout) has no ONNX translation'); }), 1 << 20, none.log), undefined);
  t.match(none.lines.join("\n"), /has no ONNX inference graph \(layer "drop" \(Dropout\) has no ONNX translation\): the server will not export model.onnx/);
  t.end();
});
