/**
 * The trained model, exported at the end of a run:
 *   - `model.safetensors`: every parameter under its own name, and the model's non-trainable state
 *     (batch-norm running statistics, the mean of what the finished workers sent), float32, with run
 *     metadata. Safetensors loads in PyTorch (`safetensors.torch.load_file`), JAX, TensorFlow and
 *     Rust without executing anything.
 *   - `model.onnx`: the model as an ONNX inference graph with those tensors in it, when the workers
 *     sent its graph (see model-extras.ts); ONNX Runtime in any language runs it as it is.
 *   - `model.json`: the metadata and the tensor list, for people and tools that read neither; written
 *     last, so that its presence at the run's version means the export is whole.
 */
import { bindInitializers, TemplateError } from "@distributed-ps/common/onnx/bind-initializers.ts";
import { encodeSafetensors } from "@distributed-ps/common/safetensors.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import type { BlobStore } from "../storage/blob-store.ts";
import type { TrainingRun } from "../run/training-run.ts";

export const MODEL_FORMAT = "distributed-ps-model/1";

export interface ExportResult {
  /** Bytes of model.safetensors. */
  readonly bytes: number;
  /** Bytes of model.onnx, or why it was not written. */
  readonly onnx: { readonly bytes: number } | { readonly skipped: string };
}

export async function exportModel(run: TrainingRun, store: BlobStore): Promise<ExportResult> {
  const snapshot = run.store.acquire();
  let model: Uint8Array;
  let onnx: Uint8Array | { skipped: string };
  let description: Record<string, unknown>;
  try {
    const state = run.extras.averagedState();
    const metadata = {
      format: MODEL_FORMAT,
      version: String(snapshot.version),
      updates_applied: String(run.updater.updatesApplied),
      mode: run.options.mode,
      optimizer: run.updater.optimizer.name,
      total_workers: String(run.options.workers),
      job: run.membership.fingerprint ?? "",
      state_from_workers: String(run.extras.reports),
      created_at: new Date().toISOString(),
    };
    const tensors = [...snapshot.tensors, ...state];
    model = encodeSafetensors(tensors, metadata, { checksum: true });
    onnx = inferenceModel(run, tensors, metadata);
    description = {
      ...metadata,
      file: "model.safetensors",
      onnx: onnx instanceof Uint8Array ? "model.onnx" : null,
      ...(onnx instanceof Uint8Array ? {} : { onnx_skipped: onnx.skipped }),
      parameters: snapshot.tensors.reduce((n, t) => n + t.data.length, 0),
      tensors: [
        ...snapshot.tensors.map((t) => ({ name: t.name, shape: t.shape, dtype: "float32", role: "parameter" })),
        ...state.map((t) => ({ name: t.name, shape: t.shape, dtype: "float32", role: "state" })),
      ],
    };
  } finally {
    snapshot.release();
  }
  await store.put("model.safetensors", model);
  if (onnx instanceof Uint8Array) await store.put("model.onnx", onnx);
  await store.put("model.json", new TextEncoder().encode(`${JSON.stringify(description, null, 2)}\n`));
  return { bytes: model.length, onnx: onnx instanceof Uint8Array ? { bytes: onnx.length } : onnx };
}

/** model.onnx's bytes, or why there is none. */
function inferenceModel(run: TrainingRun, tensors: readonly NamedTensor[], metadata: Record<string, string>): Uint8Array | { skipped: string } {
  const graph = run.extras.graph;
  if (graph === undefined) return { skipped: "no worker sent the model's inference graph" };
  if (!run.extras.holdsEveryParameter) return { skipped: "a sharded run's model.onnx would need every shard's tensors; each shard exports its own in model.safetensors" };
  try {
    return bindInitializers(graph, tensors, metadata);
  } catch (err) {
    if (err instanceof TemplateError) return { skipped: err.message };
    throw err;
  }
}

/** Whether `store` already holds this run's model at its current version (model.json is written last). */
export async function isExported(run: TrainingRun, store: BlobStore): Promise<boolean> {
  const written = await store.get("model.json");
  if (written === undefined) return false;
  try {
    const description = JSON.parse(new TextDecoder().decode(written)) as { version?: unknown; format?: unknown };
    return description.format === MODEL_FORMAT && description.version === String(run.store.version);
  } catch {
    return false; // unreadable: write it again
  }
}
