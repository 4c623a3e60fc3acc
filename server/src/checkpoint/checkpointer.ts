/**
 * Checkpoints: the whole state of a run, so a restarted server continues where the last one
 * stopped. One safetensors object per checkpoint, named by version (`ckpt-0000001200.safetensors`),
 * holding
 *   - every parameter as `params/<name>` and every optimizer buffer as `optimizer/<name>/<slot>`
 *     (keyed by tensor, so a run can resume with a different shard layout);
 *   - the state finished workers sent for the exported model as `model_state/<slot>/<name>`, and the
 *     model's inference graph (base64) in the metadata (see model-extras.ts);
 *   - metadata: version, updates applied (the schedule's position), slots with their data
 *     positions and whether they finished, who trains which part of the data, the job fingerprint,
 *     the epoch count, whether the run is complete, and the SHA-256 of the whole object.
 *
 * A checkpoint is written when the run's state changes in a way a restart must not lose: every
 * CHECKPOINT_EVERY_STEPS updates, every CHECKPOINT_EVERY_SECONDS if anything changed, when a slot
 * finishes, when the worker count changes, when the run completes, on SIGTERM. The state is
 * captured synchronously — parameters, optimizer state and slot positions all at one version — and
 * written afterwards, one write at a time, atomically (see BlobStore); of several captures of one
 * version waiting for a write, only the newest is written. Older checkpoints beyond CHECKPOINT_KEEP are deleted after a newer one is
 * safely written. Loading takes the newest checkpoint that parses and matches its checksum,
 * reporting and skipping broken ones.
 */
import type { Logger } from "@distributed-ps/common/log.ts";
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { decodeSafetensors, encodeSafetensors, verifyChecksum } from "@distributed-ps/common/safetensors.ts";
import type { PartRecord } from "../run/part.ts";
import type { SlotRecord } from "../run/slot.ts";
import type { TrainingRun } from "../run/training-run.ts";
import type { BlobStore } from "../storage/blob-store.ts";
import type { Checkpoint } from "./checkpoint.ts";

export const CHECKPOINT_FORMAT = "distributed-ps-checkpoint/2";
/** Formats still read: /1 had no epoch count or completion flag, and a checksum of the data only. */
const READABLE_FORMATS = new Set(["distributed-ps-checkpoint/1", CHECKPOINT_FORMAT]);
const NAME = /^ckpt-(\d{10})\.safetensors$/;

export function checkpointKey(version: number): string {
  return `ckpt-${String(version).padStart(10, "0")}.safetensors`;
}

/** The version a checkpoint's key names (checkpointKey's inverse); undefined for any other name. */
export function checkpointVersion(key: string): number | undefined {
  const m = NAME.exec(key);
  return m === null ? undefined : Number(m[1]);
}

/** Serialises the run's current state (synchronously: nothing can change while it runs). */
export function captureCheckpoint(run: TrainingRun): { key: string; version: number; bytes: Uint8Array } {
  const snapshot = run.store.acquire();
  try {
    const tensors: NamedTensor[] = snapshot.tensors.map((t) => ({ name: `params/${t.name}`, shape: t.shape, data: t.data }));
    for (const [name, data] of run.updater.optimizer.state()) {
      tensors.push({ name: `optimizer/${name}`, shape: [data.length], data });
    }
    const extras = run.extras.snapshot();
    for (const [slot, state] of extras.state) for (const t of state) tensors.push({ ...t, name: `model_state/${slot}/${t.name}` });
    const bytes = encodeSafetensors(
      tensors,
      {
        format: CHECKPOINT_FORMAT,
        version: String(snapshot.version),
        updates_applied: String(run.updater.updatesApplied),
        mode: run.options.mode,
        optimizer: run.updater.optimizer.name,
        fingerprint: run.membership.fingerprint ?? "",
        slots: JSON.stringify(run.membership.snapshot()),
        data_plan: JSON.stringify(run.plan.snapshot()),
        epochs: run.epochs === undefined ? "" : String(run.epochs),
        run_complete: String(run.complete),
        ...(extras.graph === undefined ? {} : { inference_graph: Buffer.from(extras.graph).toString("base64") }),
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
  if (!READABLE_FORMATS.has(m.format ?? "")) throw new Error(`format "${m.format}" is not ${CHECKPOINT_FORMAT}`);
  const params: NamedTensor[] = [];
  const optimizerState = new Map<string, Float32Array>();
  const state = new Map<number, NamedTensor[]>();
  for (const t of decoded.tensors) {
    if (t.name.startsWith("params/")) params.push({ ...t, name: t.name.slice("params/".length) });
    else if (t.name.startsWith("optimizer/")) optimizerState.set(t.name.slice("optimizer/".length), t.data);
    else if (t.name.startsWith("model_state/")) {
      const [, slot, name] = /^model_state\/(\d+)\/(.+)$/.exec(t.name) ?? [];
      if (slot === undefined || name === undefined) throw new Error(`tensor "${t.name}" is not model_state/<slot>/<name>`);
      state.set(Number(slot), [...(state.get(Number(slot)) ?? []), { ...t, name }]);
    }
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
    epochs: m.epochs ? Number(m.epochs) : undefined,
    complete: m.run_complete === "true",
    extras: { graph: m.inference_graph ? new Uint8Array(Buffer.from(m.inference_graph, "base64")) : undefined, state },
  };
}

/**
 * What a checkpoint would hold that the previous one may not: the version, which slots finished or
 * are retired (the worker count), and whether the run is complete. A checkpoint is written only when
 * this changed.
 */
function stateStamp(run: TrainingRun): string {
  const slots = run.membership.slots.map((s) => (s.state === "finished" ? "f" : s.retired ? "r" : "-")).join("");
  return `${run.store.version}:${slots}:${run.complete}`;
}

export interface CheckpointerOptions {
  everySteps: number;
  everySeconds: number;
  keep: number;
  /** Keys pruning must not delete besides the newest `keep` (a sharded run's newest complete set). */
  protect?: (() => Promise<ReadonlySet<string>>) | undefined;
}

/** A captured checkpoint waiting for its write. */
interface PendingWrite {
  captured: { key: string; version: number; bytes: Uint8Array; reason: string };
  done: Promise<void>;
}

/** Decides when to checkpoint and writes the checkpoints, one at a time. */
export class Checkpointer {
  readonly #run: TrainingRun;
  readonly #store: BlobStore;
  readonly #o: CheckpointerOptions;
  readonly #log: Logger;
  #writing: Promise<void> = Promise.resolve();
  /** The capture waiting behind the write in progress, if any. */
  #waiting: PendingWrite | undefined;
  #lastStamp: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Number of checkpoints written, and the last one's key (for status). */
  saved = 0;
  lastKey: string | undefined;

  constructor(run: TrainingRun, store: BlobStore, o: CheckpointerOptions, log: Logger) {
    this.#run = run;
    this.#store = store;
    this.#o = o;
    this.#log = log;
    // A run resumed from a checkpoint need not write the same state again.
    this.#lastStamp = run.store.initialized ? stateStamp(run) : undefined;
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
   * Captures the state now, if it changed since the last capture, and writes it after any write in
   * progress. Resolves once written (at once when nothing changed and nothing is being written);
   * rejects if the write failed (also logged).
   */
  save(reason: string): Promise<void> {
    if (!this.#run.store.initialized) return Promise.resolve();
    const stamp = stateStamp(this.#run);
    if (stamp === this.#lastStamp) return this.#writing;
    this.#lastStamp = stamp;
    const captured = { ...captureCheckpoint(this.#run), reason };
    const waiting = this.#waiting;
    if (waiting !== undefined && waiting.captured.version === captured.version) {
      // Not started yet, and of the same version: the newer state replaces it (it would overwrite it anyway).
      waiting.captured = captured;
      return waiting.done;
    }
    const entry: PendingWrite = { captured, done: Promise.resolve() };
    entry.done = this.#writing.then(() => {
      if (this.#waiting === entry) this.#waiting = undefined;
      return this.#write(entry.captured);
    });
    this.#waiting = entry;
    this.#writing = entry.done.catch(() => {});
    return entry.done;
  }

  async #write(captured: PendingWrite["captured"]): Promise<void> {
    const started = Date.now();
    try {
      await this.#store.put(captured.key, captured.bytes);
    } catch (err) {
      this.#log.error(`checkpoint at version ${captured.version} to ${this.#store.description} failed: ${(err as Error).message}`);
      this.#lastStamp = undefined; // the next save writes whatever the state is then
      throw err;
    }
    this.saved++;
    this.lastKey = captured.key;
    this.#log.info(
      `checkpoint (${captured.reason}): version ${captured.version}, ${(captured.bytes.length / 1e6).toFixed(1)} MB to ${this.#store.description}/${captured.key} in ${Date.now() - started} ms`,
    );
    await this.#prune();
  }

  async #prune(): Promise<void> {
    const keys = (await this.#store.list()).filter((k) => checkpointVersion(k) !== undefined).sort();
    const kept = (await this.#o.protect?.()) ?? new Set<string>();
    for (const key of keys.slice(0, Math.max(0, keys.length - this.#o.keep))) if (!kept.has(key)) await this.#store.delete(key);
  }

  /** Stops the timer and waits for the write in progress. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#writing;
  }
}
