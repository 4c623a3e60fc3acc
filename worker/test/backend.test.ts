import t from "tap";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../src/model/backend.ts";

t.test("wasm initialises in Node from any cwd, without setWasmPaths", async (t) => {
  // Run from a directory unrelated to the package to prove the .wasm files are found via the module path.
  const cwd = process.cwd();
  process.chdir("/");
  try {
    const warnings: string[] = [];
    t.equal(await initBackend("wasm", (m) => warnings.push(m)), "wasm", "the wasm backend is in use");
    t.same(warnings, [], "no fallback warning");
    t.equal(tf.getBackend(), "wasm", "tfjs reports wasm");
    const product = tf.tidy(() => Array.from(tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[1], [1]])).dataSync()));
    t.same(product, [3, 7], "a matMul computes on wasm");
  } finally {
    process.chdir(cwd);
  }
});

t.test("cpu can be selected explicitly", async (t) => {
  t.equal(await initBackend("cpu"), "cpu", "the cpu backend is in use");
  t.equal(tf.getBackend(), "cpu", "tfjs reports cpu");
  t.equal(await initBackend("wasm"), "wasm", "and switching back to wasm works");
});
