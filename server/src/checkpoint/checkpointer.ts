/**
 * Checkpoints: the whole state of a run, so a restarted server continues where the last one
 * stopped. One safetensors object per checkpoint, named by version (`ckpt-0000001200.safetensors`),
 * holding
 *   - every parameter as `params/<name>` and every optimizer buffer as `optimizer/<name>/<slot>`
 *     (keyed by tensor, so a run can resume with a different shard layout);
 *   - metadata: version, updates applied (the schedule's position), slots with their data
 *     positions, the job fingerprint, and the SHA-256 of the data section.
 *
 * The state is captured synchronously — parameters, optimizer state and slot positions all at one
 * version — and written afterwards, one write at a time, atomically (see BlobStore). Older
 * checkpoints beyond CHECKPOINT_KEEP are deleted after a newer one is safely written. Loading takes
 * the newest checkpoint that parses and matches its checksum, reporting and skipping broken ones.
 */
import type { Logger } from "@distributed-ps/common/log.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { decodeSafetensors, encodeSafetensors, verifyChecksum } from "@distributed-ps/common/safetensors.ts";
import type { PartRecord } from "../data-plan.ts";
import type { SlotRecord } from "../membership.ts";
import type { BlobStore } from "../storage/blob-store.ts";
import type { TrainingRun } from "../training-run.ts";

export const CHECKPOINT_FORMAT = "distributed-ps-checkpoint/1";
const NAME = /^ckpt-(\d{10})\.safetensors$/;

export interface Checkpoint {
  key: string;
  version: number;
  updatesApplied: number;
  params: NamedTensor[];
  optimizerState: Map<string, Float32Array>;
  slots: SlotRecord[];
  /** Which slot trains which part of each epoch's data; empty in checkpoints from before elastic scaling. */
  plan: PartRecord[];
  fingerprint: string | undefined;
  mode: string;
}

export function checkpointKey(version: number): string {
  return `ckpt-${String(version).padStart(10, "0")}.safetensors`;
}

/** Serialises the run's current state (synchronously: nothing can change while it runs). */
export function captureCheckpoint(run: TrainingRun): { key: string; version: number; bytes: Uint8Array } {
  const snapshot = run.store.acquire();
  try {
    const tensors: NamedTensor[] = snapshot.tensors.map((t) => ({ name: `params/${t.name}`, shape: t.shape, data: t.data }));
    for (const [name, data] of run.updater.optimizer.state()) {
      tensors.push({ name: `optimizer/${name}`, shape: [data.length], data });
    }
    const bytes = encodeSafetensors(
      tensors,
      {
        format: CHECKPOINT_FORMAT,
        version: String(snapshot.version),
        updates_applied: String(run.updater.updatesApplied),
        mode: run.config.SERVER_MODE,
        optimizer: run.updater.optimizer.name,
        fingerprint: run.membership.fingerprint ?? "",
        slots: JSON.stringify(run.membership.snapshot()),
        data_plan: JSON.stringify(run.plan.snapshot()),
        created_at: new Date().toISOString(),
      },
      { checksum: true },
    );
    return { key: checkpointKey(snapshot.version), version: snapshot.version, bytes };
  } finally {
    snapshot.release();
  }
}

/** Parses and verifies one checkpoint object; throws with the reason if it is unusable. */
export function parseCheckpoint(key: string, bytes: Uint8Array): Checkpoint {
  const decoded = decodeSafetensors(bytes);
  verifyChecksum(bytes, decoded);
  const m = decoded.metadata;
  if (m.format !== CHECKPOINT_FORMAT) throw new Error(`format "${m.format}" is not ${CHECKPOINT_FORMAT}`);
  const params: NamedTensor[] = [];
  const optimizerState = new Map<string, Float32Array>();
  for (const t of decoded.tensors) {
    if (t.name.startsWith("params/")) params.push({ ...t, name: t.name.slice("params/".length) });
    else if (t.name.startsWith("optimizer/")) optimizerState.set(t.name.slice("optimizer/".length), t.data);
  }
  if (params.length === 0) throw new Error("holds no parameters");
  return {
    key,
    version: Number(m.version),
    updatesApplied: Number(m.updates_applied),
    params,
    optimizerState,
    slots: JSON.parse(m.slots ?? "[]") as SlotRecord[],
    plan: JSON.parse(m.data_plan ?? "[]") as PartRecord[],
    fingerprint: m.fingerprint || undefined,
    mode: m.mode ?? "",
  };
}

export interface CheckpointerOptions {
  everySteps: number;
  everySeconds: number;
  keep: number;
  /** Keys pruning must not delete besides the newest `keep` (a sharded run's newest complete set). */
  protect?: (() => Promise<ReadonlySet<string>>) | undefined;
}

/** Decides when to checkpoint and writes the checkpoints, one at a time. */
export class Checkpointer {
  readonly #run: TrainingRun;
  readonly #store: BlobStore;
  readonly #o: CheckpointerOptions;
  readonly #log: Logger;
  #writing: Promise<void> = Promise.resolve();
  #lastSavedVersion = -1;
  #timer: NodeJS.Timeout | undefined;
  /** Number of checkpoints written, and the last one's key (for status). */
  saved = 0;
  lastKey: string | undefined;

  constructor(run: TrainingRun, store: BlobStore, o: CheckpointerOptions, log: Logger) {
    this.#run = run;
    this.#store = store;
    this.#o = o;
    this.#log = log;
    // A run resumed from a checkpoint need not write the same version again.
    this.#lastSavedVersion = run.store.initialized ? run.store.version : -1;
    if (o.everySeconds > 0) {
      this.#timer = setInterval(() => void this.save("timer").catch(() => {}), o.everySeconds * 1000);
      this.#timer.unref();
    }
  }

  get description(): string {
    return this.#store.description;
  }

  /** Called after every applied update (synchronously, with the state consistent). */
  onApplied(version: number): void {
    if (this.#o.everySteps > 0 && version % this.#o.everySteps === 0) void this.save("every steps").catch(() => {});
  }

  /**
   * Captures the state now and writes it after any write in progress. Resolves once written;
   * rejects if the write failed (also logged).
   */
  save(reason: string): Promise<void> {
    if (!this.#run.store.initialized) return Promise.resolve();
    if (this.#run.store.version === this.#lastSavedVersion) return this.#writing;
    const captured = captureCheckpoint(this.#run);
    this.#lastSavedVersion = captured.version;
    const write = this.#writing.then(async () => {
      const started = Date.now();
      try {
        await this.#store.put(captured.key, captured.bytes);
      } catch (err) {
        this.#log.error(`checkpoint at version ${captured.version} to ${this.#store.description} failed: ${(err as Error).message}`);
        this.#lastSavedVersion = -1;
        throw err;
      }
      this.saved++;
      this.lastKey = captured.key;
      this.#log.info(
        `checkpoint (${reason}): version ${captured.version}, ${(captured.bytes.length / 1e6).toFixed(1)} MB to ${this.#store.description}/${captured.key} in ${Date.now() - started} ms`,
      );
      await this.#prune();
    });
    this.#writing = write.catch(() => {});
    return write;
  }

  async #prune(): Promise<void> {
    const keys = (await this.#store.list()).filter((k) => NAME.test(k)).sort();
    const kept = (await this.#o.protect?.()) ?? new Set<string>();
    for (const key of keys.slice(0, Math.max(0, keys.length - this.#o.keep))) if (!kept.has(key)) await this.#store.delete(key);
  }

  /** Stops the timer and waits for the write in progress. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#writing;
  }
}
