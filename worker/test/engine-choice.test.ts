/**
 * WORKER_ENGINE in a real worker process on a machine where ONNX Runtime cannot load (simulated by a
 * module hook, fixtures/without-onnxruntime.mjs): `onnxruntime` stops with one line and exit 1 before
 * it contacts a server; `auto` warns once and trains with tfjs.
 */
import t from "tap";
import { fileURLToPath } from "node:url";
import { runNode } from "../../test/helpers/processes.ts";

const withoutOnnxRuntime = fileURLToPath(new URL("./fixtures/without-onnxruntime.mjs", import.meta.url));

function worker(env: Record<string, string>): Promise<{ code: number; output: string }> {
  return runNode("worker/src/main.ts", {
    nodeArgs: ["--import", withoutOnnxRuntime],
    // Nothing listens on port 1: a worker that got as far as connecting would retry, then say so.
    env: { PARAMETER_SERVER_ADDRESS: "127.0.0.1:1", CONNECT_TIMEOUT_MS: "300", TRAIN_EXAMPLES: "1000", ...env },
  });
}

t.test("WORKER_ENGINE=onnxruntime without ONNX Runtime: one line, exit 1, no server contacted", async (t) => {
  const r = await worker({ WORKER_ENGINE: "onnxruntime" });
  t.equal(r.code, 1, "exit 1");
  const errors = r.output.split("\n").filter((l) => /ERROR/.test(l));
  t.equal(errors.length, 1, "one error line");
  t.match(errors[0], /WORKER_ENGINE=onnxruntime: ONNX Runtime cannot be loaded on linux\/\w+: libonnxruntime\.so\.1: cannot open shared object file/);
  t.notMatch(r.output, /127\.0\.0\.1:1|registered|retrying/, "it never tried the server");
});

t.test("WORKER_ENGINE=auto without ONNX Runtime: one warning, then tfjs", async (t) => {
  const r = await worker({ WORKER_ENGINE: "auto" });
  const warnings = r.output.split("\n").filter((l) => /WARN/.test(l) && /ONNX Runtime/.test(l));
  t.equal(warnings.length, 1, "one warning about it");
  t.match(warnings[0], /ONNX Runtime cannot be loaded .*; training with the slower tfjs engine instead/);
  t.match(r.output, /engine tfjs wasm/, "the worker goes on with tfjs");
  t.match(r.output, /127\.0\.0\.1:1/, "and gets as far as the (absent) server");
});
