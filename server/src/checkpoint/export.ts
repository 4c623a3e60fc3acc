/**
 * The trained model, exported at the end of a run: `model.safetensors` (every parameter under its
 * own name, float32, with run metadata) and `model.json` (the same metadata and the tensor list, for
 * people and tools that do not read safetensors). Safetensors loads in PyTorch
 * (`safetensors.torch.load_file`), JAX, TensorFlow and Rust without executing anything.
 */
import { encodeSafetensors } from "@distributed-ps/common/safetensors.ts";
import type { BlobStore } from "../storage/blob-store.ts";
import type { TrainingRun } from "../training-run.ts";

export const MODEL_FORMAT = "distributed-ps-model/1";

export async function exportModel(run: TrainingRun, store: BlobStore): Promise<{ bytes: number }> {
  const snapshot = run.store.acquire();
  let model: Uint8Array;
  let description: Record<string, unknown>;
  try {
    const metadata = {
      format: MODEL_FORMAT,
      version: String(snapshot.version),
      updates_applied: String(run.updater.updatesApplied),
      mode: run.config.SERVER_MODE,
      optimizer: run.updater.optimizer.name,
      total_workers: String(run.config.TOTAL_WORKERS_EXPECTED),
      job: run.membership.fingerprint ?? "",
      created_at: new Date().toISOString(),
    };
    model = encodeSafetensors(snapshot.tensors, metadata, { checksum: true });
    description = {
      ...metadata,
      file: "model.safetensors",
      parameters: snapshot.tensors.reduce((n, t) => n + t.data.length, 0),
      tensors: snapshot.tensors.map((t) => ({ name: t.name, shape: t.shape, dtype: "float32" })),
    };
  } finally {
    snapshot.release();
  }
  await store.put("model.safetensors", model);
  await store.put("model.json", new TextEncoder().encode(`${JSON.stringify(description, null, 2)}\n`));
  return { bytes: model.length };
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
