/**
 * Chooses the tfjs compute backend for this worker process. Call (and await) once at start-up,
 * BEFORE building any model: variables live on the backend that was active when they were created.
 *
 * wasm (XNNPACK kernels, SIMD, single-threaded in Node) is several times faster than the pure-JS cpu
 * backend; cpu is the fallback if the WebAssembly module cannot be loaded.
 *
 * No setWasmPaths() is needed in Node: the package's "main" is its Node bundle
 * (dist/tf-backend-wasm.node.js, used by both import and require since the package has no
 * "exports" map), which locates the .wasm files next to itself via __dirname and reads them with fs,
 * so it works from any cwd. setWasmPaths() would only be needed if the worker were bundled into a
 * single file that no longer sits next to node_modules/@tensorflow/tfjs-backend-wasm/dist/.
 */
import * as tf from "@tensorflow/tfjs-core";
// Side-effect imports: each registers its backend with tfjs-core.
// (tfjs-backend-cpu is installed as a dependency of tfjs-backend-wasm.)
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-wasm";
import { registerTrainingKernels } from "./training-kernels.ts";

export type BackendName = "wasm" | "cpu";

/**
 * Activates `preferred`, falling back to "cpu" (with a warning through `warn`) if wasm fails to
 * initialise. Resolves to the name of the backend actually in use; rejects only if cpu fails too.
 */
export async function initBackend(
  preferred: BackendName,
  warn: (message: string) => void = (message) => console.warn(message),
): Promise<BackendName> {
  if (preferred === "wasm") {
    registerTrainingKernels();
    let reason = "tf.setBackend('wasm') returned false";
    try {
      if (await tf.setBackend("wasm")) {
        await tf.ready();
        return "wasm";
      }
    } catch (error) {
      reason = error instanceof Error ? error.message : String(error);
    }
    warn(`tfjs wasm backend unavailable (${reason}); falling back to the slower cpu backend`);
  }
  if (!(await tf.setBackend("cpu"))) throw new Error("tfjs cpu backend failed to initialise");
  await tf.ready();
  return "cpu";
}
