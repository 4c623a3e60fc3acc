/**
 * Builds the model and the compute engine that trains it, as the worker's configuration says:
 *
 *   WORKER_ENGINE=auto         ONNX Runtime; if it cannot load on this machine, one warning and tfjs
 *   WORKER_ENGINE=onnxruntime  ONNX Runtime or a one-line error (the worker exits 1, pushing nothing)
 *   WORKER_ENGINE=tfjs         tfjs on TF_BACKEND (wasm, or the pure-JS cpu backend)
 *
 * Either way the model is first built with tfjs-layers (models.ts): its architecture, parameter
 * names and seeded initial weights are the same whichever engine trains it.
 */
import { OnnxTrainer } from "../onnx/onnx-trainer.ts";
import { defaultThreads } from "../onnx/runtime.ts";
import { initBackend, type BackendName } from "./backend.ts";
import type { TrainingEngine } from "./engine.ts";
import type { ModelOptions } from "./model-builder.ts";
import { createModel, type ModelName } from "./models.ts";
import { Trainer } from "./trainer.ts";

export type EngineChoice = "auto" | "onnxruntime" | "tfjs";

export interface EngineSettings {
  readonly engine: EngineChoice;
  /** Threads for ONNX Runtime's operators; default: the cores this process may use. */
  readonly threads?: number;
  readonly tfBackend: BackendName;
}

export interface CreatedEngine {
  readonly trainer: TrainingEngine;
  /** How it runs, for the log: "onnxruntime (2 threads)", "tfjs wasm". */
  readonly description: string;
}

export async function createEngine(model: ModelName, options: ModelOptions, settings: EngineSettings, warn: (message: string) => void): Promise<CreatedEngine> {
  // tfjs builds the model in every case (its initialisers give the seeded initial weights).
  const backend = await initBackend(settings.tfBackend, warn);
  if (settings.engine !== "tfjs") {
    const threads = settings.threads ?? defaultThreads();
    try {
      const trainer = await OnnxTrainer.create(createModel(model, options), { threads });
      return { trainer, description: `onnxruntime (${threads} thread${threads === 1 ? "" : "s"})` };
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (settings.engine === "onnxruntime") throw new Error(`WORKER_ENGINE=onnxruntime: ${reason}`);
      warn(`${reason}; training with the slower tfjs engine instead (WORKER_ENGINE=tfjs says so and skips this warning)`);
    }
  }
  return { trainer: new Trainer(createModel(model, options)), description: `tfjs ${backend}` };
}
