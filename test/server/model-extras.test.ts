/**
 * What workers send with Finish for the exported model (ModelExtras): the server checks it and
 * refuses bad extras with one InvalidArgument line that leaves the slot unfinished; it averages the
 * workers' state by name, keeps graph and state in its checkpoints, and exports model.onnx — the
 * graph with the trained tensors bound — which ONNX Runtime runs, from a directory or from S3.
 */
import t from "tap";
import { Code, ConnectError } from "@connectrpc/connect";
import { create, fromBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema } from "@distributed-ps/common/gen/onnx/onnx_pb.js";
import { ModelExtrasSchema, type ModelExtras } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { GraphBuilder } from "@distributed-ps/common/onnx/graph-builder.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { decodeSafetensors } from "@distributed-ps/common/safetensors.ts";
import { readFile, readdir } from "node:fs/promises";
import * as ort from "onnxruntime-node";
import { captureCheckpoint, parseCheckpoint } from "../../server/src/checkpoint/checkpointer.ts";
import { exportModel } from "../../server/src/checkpoint/export.ts";
import { openBlobStore } from "../../server/src/storage/open-blob-store.ts";
import { TrainingRun } from "../../server/src/run/training-run.ts";
import { ModelExtrasStore } from "../../server/src/run/model-extras.ts";
import { parseEnv } from "@distributed-ps/common/env.ts";
import { runOptionsFrom, serverEnvSchema } from "../../server/src/config.ts";
import { createLogger } from "@distributed-ps/common/log.ts";
import { startS3rver } from "../helpers/s3.ts";
import { startTestServer, workersWithParameters } from "../helpers/test-server.ts";

/** logits = input · w + b - mean: the test server's parameters w [2,2], b [2] and one state tensor. */
function template(o: { meanShape?: number[]; extraInput?: string } = {}): Uint8Array {
  const g = new GraphBuilder();
  const input = g.input("input", [null, 2]);
  const w = g.input("w", [2, 2]);
  const b = g.input("b", [2]);
  const mean = g.input("bn/mean", o.meanShape ?? [2]);
  if (o.extraInput !== undefined) g.input(o.extraInput, [2]);
  const product = g.op("MatMul", [input, w], {}, [null, 2]);
  const shifted = g.op("Add", [product, b], {}, [null, 2]);
  g.output(g.op("Sub", [shifted, mean], {}, [null, 2]), "logits");
  return g.bytes("test");
}

function stateChunk(name: string, values: number[], shape = [values.length]) {
  return { name, shape, byteOffset: 0n, data: new Uint8Array(new Float32Array(values).buffer) };
}

function extras(state: ReturnType<typeof stateChunk>[], graph: Uint8Array = template()): ModelExtras {
  return create(ModelExtrasSchema, { state, inferenceGraph: graph });
}

t.test("bad extras are refused with what was wrong, and the slot stays unfinished", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "1" });
  const [w] = await workersWithParameters(ts, 1);
  const good = stateChunk("bn/mean", [1, 2]);
  const cases: { what: string; extras: ModelExtras; message: RegExp }[] = [
    { what: "a state tensor without a name", extras: extras([stateChunk("", [1, 2])]), message: /a tensor has no name/ },
    { what: "a state tensor twice", extras: extras([good, good]), message: /"bn\/mean" is given twice/ },
    { what: "a state tensor named as a parameter", extras: extras([good, stateChunk("w", [1, 2, 3, 4], [2, 2])]), message: /"w" has the name of a parameter/ },
    { what: "bytes that do not fit the shape", extras: extras([{ ...good, data: new Uint8Array(12) }]), message: /has 12 bytes, its shape \[2\] needs 8/ },
    { what: "a part of a tensor", extras: extras([{ ...good, byteOffset: 4n }]), message: /must be whole and dense/ },
    { what: "a zero dimension", extras: extras([stateChunk("bn/mean", [], [0])]), message: /every dimension must be positive/ },
    { what: "a graph that is not ONNX", extras: extras([good], new Uint8Array([0xff, 0xff, 0xff])), message: /not an ONNX ModelProto/ },
    { what: "a graph input whose shape differs from the tensor's", extras: extras([stateChunk("bn/mean", [1, 2, 3])], template({ meanShape: [2] })), message: /graph input "bn\/mean" has shape \[2\] but the tensor of that name is \[3\]/ },
    { what: "a graph input no tensor is named after", extras: extras([good], template({ extraInput: "bn/var" })), message: /keeps "input", "bn\/var"/ },
  ];
  for (const c of cases) {
    const err = await w!.client.finish({ session: w!.session, modelExtras: c.extras }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    t.equal(err?.code, Code.InvalidArgument, `${c.what}: InvalidArgument`);
    t.match(err?.rawMessage, c.message, `${c.what}: ${err?.rawMessage}`);
    t.match(err?.rawMessage, /^Finish: model_extras/, `${c.what}: names the field`);
  }
  t.equal(ts.server.run.membership.slots[0]!.state, "active", "the slot is not finished by a refused call");
  t.equal(ts.server.run.extras.reports, 0, "nothing was kept");
  t.equal(ts.server.run.extras.graph, undefined);
  t.equal(await w!.finish({}, extras([good])), true, "good extras are taken and the run completes");
  t.equal(ts.server.run.extras.reports, 1);
});

t.test("state is averaged by name; a slot that reports again replaces its state; shapes must agree", (t) => {
  const store = new ModelExtrasStore((name) => ({ w: [2, 2], b: [2] })[name], true);
  store.record(0, extras([stateChunk("bn/mean", [1, 2]), stateChunk("bn/var", [4])]));
  store.record(1, extras([stateChunk("bn/mean", [3, 6]), stateChunk("bn/var", [8])], new Uint8Array()));
  store.record(2, extras([stateChunk("bn/mean", [100, 100])], new Uint8Array()));
  store.record(2, extras([stateChunk("bn/mean", [5, 10])], new Uint8Array()));
  const averaged = Object.fromEntries(store.averagedState().map((s) => [s.name, Array.from(s.data)]));
  t.same(averaged, { "bn/mean": [3, 6], "bn/var": [6] }, "the mean over the slots that sent each name");
  t.ok(store.graph !== undefined, "an empty graph does not replace the one kept");
  t.throws(() => store.record(3, extras([stateChunk("bn/mean", [1, 2, 3])], new Uint8Array())), /other workers sent \[2\]/);
  t.end();
});

function runWithParameters(env: Record<string, string> = {}, initialize = true): TrainingRun {
  const config = parseEnv(serverEnvSchema, { TOTAL_WORKERS_EXPECTED: "2", STATUS_INTERVAL_MS: "0", ...env });
  const run = new TrainingRun(runOptionsFrom(config), createLogger("server", "error"));
  if (initialize) run.store.initialize(
    [
      { name: "w", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
      { name: "b", shape: [2], data: new Float32Array([0.5, -0.5]) },
    ],
    7,
  );
  return run;
}

t.test("checkpoints keep the extras; model.onnx holds the trained tensors and runs in ONNX Runtime", async (t) => {
  const run = runWithParameters();
  run.extras.record(0, extras([stateChunk("bn/mean", [1, 2])]));
  run.extras.record(1, extras([stateChunk("bn/mean", [3, 4])]));

  const captured = captureCheckpoint(run);
  const restored = runWithParameters({}, false);
  restored.restore(parseCheckpoint(captured.key, captured.bytes));
  t.same(restored.extras.graph, run.extras.graph, "the graph comes back from the checkpoint");
  t.same(restored.extras.averagedState(), run.extras.averagedState(), "and every slot's state");

  const dir = t.testdir();
  const result = await exportModel(restored, openBlobStore(dir));
  t.ok("bytes" in result.onnx, "model.onnx written");
  t.same((await readdir(dir)).sort(), ["model.json", "model.onnx", "model.safetensors"]);
  const safetensors = decodeSafetensors(await readFile(`${dir}/model.safetensors`));
  t.same(
    Object.fromEntries(safetensors.tensors.map((x: NamedTensor) => [x.name, Array.from(x.data)])),
    { w: [1, 2, 3, 4], b: [0.5, -0.5], "bn/mean": [2, 3] },
    "model.safetensors holds the parameters and the averaged state",
  );
  const description = JSON.parse(await readFile(`${dir}/model.json`, "utf8")) as { onnx: string; tensors: { name: string; role: string }[]; state_from_workers: string };
  t.equal(description.onnx, "model.onnx");
  t.equal(description.state_from_workers, "2");
  t.same(description.tensors.map((x) => `${x.name}:${x.role}`), ["w:parameter", "b:parameter", "bn/mean:state"]);

  const session = await ort.InferenceSession.create(`${dir}/model.onnx`);
  t.teardown(() => session.release());
  t.same(session.inputNames, ["input"], "only the data input is left");
  const out = await session.run({ input: new ort.Tensor("float32", new Float32Array([1, 0, 0, 1]), [2, 2]) });
  // [1,0]·w + b - mean = [1, 2] + [0.5, -0.5] - [2, 3]; [0,1]·w + b - mean = [3, 4] + [0.5, -0.5] - [2, 3]
  t.same(Array.from(out.logits!.data as Float32Array), [-0.5, -1.5, 1.5, 0.5], "the logits of the bound model");
  const metadata = Object.fromEntries(fromBinary(ModelProtoSchema, await readFile(`${dir}/model.onnx`)).metadataProps.map((p) => [p.key, p.value]));
  t.match(metadata, { format: "distributed-ps-model/1", version: "7", state_from_workers: "2" }, "with the run's metadata");
});

t.test("no graph, or a graph on a shard of a sharded run: model.safetensors alone, and model.json says why", async (t) => {
  const plain = runWithParameters();
  const dir = t.testdir({ plain: {}, sharded: {} });
  const a = await exportModel(plain, openBlobStore(`${dir}/plain`));
  t.same(a.onnx, { skipped: "no worker sent the model's inference graph" });
  t.same((await readdir(`${dir}/plain`)).sort(), ["model.json", "model.safetensors"]);

  const shard = runWithParameters({ SHARD_INDEX: "0", SHARD_ADDRESSES: "127.0.0.1:1,127.0.0.1:2" });
  shard.extras.record(0, extras([stateChunk("bn/mean", [1, 2])], template({ extraInput: "elsewhere" })));
  const b = await exportModel(shard, openBlobStore(`${dir}/sharded`));
  t.match(b.onnx, { skipped: /sharded run/ });
  const description = JSON.parse(await readFile(`${dir}/sharded/model.json`, "utf8")) as { onnx: unknown; onnx_skipped: string };
  t.equal(description.onnx, null);
  t.match(description.onnx_skipped, /sharded run/);
});

t.test("model.onnx to S3 (s3rver on loopback): written beside model.safetensors and loadable from there", async (t) => {
  const endpoint = await startS3rver(t);
  const run = runWithParameters();
  run.extras.record(0, extras([stateChunk("bn/mean", [1, 2])]));
  const store = openBlobStore("s3://ps-bucket/runs/one/final", { s3Endpoint: endpoint });
  const result = await exportModel(run, store);
  t.same((await store.list()).sort(), ["model.json", "model.onnx", "model.safetensors"]);
  const bytes = await store.get("model.onnx");
  t.equal(bytes?.length, "bytes" in result.onnx ? result.onnx.bytes : -1, "the object is the whole file");
  const session = await ort.InferenceSession.create(bytes!);
  t.teardown(() => session.release());
  const out = await session.run({ input: new ort.Tensor("float32", new Float32Array([1, 0]), [1, 2]) });
  t.same(Array.from(out.logits!.data as Float32Array), [0.5, -0.5], "[1,0]·w + b - mean = [1, 2] + [0.5, -0.5] - [1, 2]");
});
