// Own file (own process): it breaks the wasm backend for the rest of the process.
import t from "tap";
import * as tf from "@tensorflow/tfjs-core";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { initBackend } from "../src/model/backend.ts";

t.test("falls back to cpu with a warning when wasm cannot load", async (t) => {
  setWasmPaths("/nonexistent-wasm-dir/"); // the .wasm binary cannot be read from here
  const warnings: string[] = [];
  t.equal(await initBackend("wasm", (m) => warnings.push(m)), "cpu", "cpu is in use");
  t.equal(tf.getBackend(), "cpu", "tfjs reports cpu");
  t.equal(warnings.length, 1, "exactly one warning");
  t.match(warnings[0], /wasm backend unavailable.*falling back.*cpu/, "the warning names both backends");
});
