/**
 * Loads ONNX Runtime (the `onnxruntime-node` package and its native CPU library) on demand, so that a
 * worker on the tfjs engine never loads it, and a machine where it cannot load gets one line saying
 * why instead of a stack trace from the module loader.
 */
import os from "node:os";
import type * as Ort from "onnxruntime-node";

export type OnnxRuntime = typeof Ort;

let loaded: Promise<OnnxRuntime> | undefined;

/** The onnxruntime-node module; rejects with a one-line reason if it (or its native library) cannot
 *  be loaded on this machine. */
export function loadOnnxRuntime(): Promise<OnnxRuntime> {
  loaded ??= import("onnxruntime-node").then(
    (ort) => ort as OnnxRuntime,
    (error: unknown) => {
      loaded = undefined;
      throw new Error(`ONNX Runtime cannot be loaded on ${process.platform}/${process.arch}: ${firstLine(error)}`);
    },
  );
  return loaded;
}

/** Threads for one graph's operators: the cores this process may use (a Fargate task's vCPUs). */
export function defaultThreads(): number {
  return os.availableParallelism();
}

/** Session options for every graph the worker runs: `threads` threads inside each operator, one graph
 *  at a time (the worker runs one step at a time, so parallel branches would only compete). */
function sessionOptions(threads: number): Ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    // Warnings about unused initializers and the like are about our graphs, not the user's run.
    logSeverityLevel: 3,
    // Idle operator threads sleep instead of spinning: a worker's step alternates with network I/O
    // on Node's own thread, and workers may share cores (make test-local); spinning would burn them.
    extra: { session: { intra_op: { allow_spinning: "0" } } },
  };
}

/** Opens `graph` in ONNX Runtime; rejects with one line naming `what` if ONNX Runtime refuses it. */
export async function openSession(graph: Uint8Array, what: string, threads: number): Promise<Ort.InferenceSession> {
  const ort = await loadOnnxRuntime();
  try {
    return await ort.InferenceSession.create(graph, sessionOptions(threads));
  } catch (error) {
    throw new Error(`ONNX Runtime refused ${what}: ${firstLine(error)}`);
  }
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0]!;
}
