/**
 * Checkpoints of sharded servers, and resuming with a different shard count.
 *
 * Every shard checkpoints its own tensors, all into the same CHECKPOINT_URI, under names that say
 * which shard of how many wrote them:
 *
 *   ckpt-0000001200.safetensors                 K = 1 (the unsharded name, as before)
 *   ckpt-0000001200.shard-0-of-2.safetensors    K = 2, shard 0
 *   ckpt-0000001200.shard-1-of-2.safetensors    K = 2, shard 1
 *
 * The files of one version from all K shards of a layout form a set; a set is complete when every
 * shard wrote it. In sync mode every shard completes the same steps, so the every-N-steps and final
 * checkpoints form complete sets; timer and SIGTERM checkpoints may not (shards reach a version at
 * slightly different moments) and are then never used for resuming. Each shard's pruning keeps its
 * file of the newest complete set, so one is always there.
 *
 * On start a shard loads the newest complete set that verifies, from any layout: the union of its
 * files is the whole model with its optimizer state, keyed by tensor name. The shard keeps the
 * tensors the partition for its own shard count assigns it (common/src/shard-partition.ts, the same
 * function the workers use) with their optimizer state, and takes the version, the schedule's
 * position, the job fingerprint, the epoch count, the completion flag and the slots (data positions)
 * from the old shard 0.
 */
import type { Logger } from "@distributed-ps/common/log.ts";
import { shardOfTensor } from "@distributed-ps/common/shard-partition.ts";
import type { BlobStore } from "../storage/blob-store.ts";
import { shardName, type ShardIdentity } from "../run/shards.ts";
import type { Checkpoint } from "./checkpoint.ts";
import { parseCheckpoint } from "./checkpointer.ts";

const KEY = /^ckpt-(\d{10})(?:\.shard-(\d+)-of-(\d+))?\.safetensors$/;

/** The files of one version written by every shard of one layout (a key is undefined where that shard's file is missing). */
export interface CheckpointSet {
  version: number;
  /** Shard count of the run that wrote it. */
  count: number;
  keys: (string | undefined)[];
}

function isComplete(set: CheckpointSet): set is CheckpointSet & { keys: string[] } {
  return set.keys.every((k) => k !== undefined);
}

/** Every checkpoint set in `root`, newest first (ties: the layout of `preferCount` first). */
export async function listCheckpointSets(root: BlobStore, preferCount = 1): Promise<CheckpointSet[]> {
  const sets = new Map<string, CheckpointSet>();
  for (const key of await root.list()) {
    const m = KEY.exec(key);
    if (m === null) continue;
    const version = Number(m[1]);
    const count = m[3] === undefined ? 1 : Number(m[3]);
    const index = m[2] === undefined ? 0 : Number(m[2]);
    if (count < 1 || index >= count) continue;
    const id = `${count}:${version}`;
    let set = sets.get(id);
    if (set === undefined) {
      set = { version, count, keys: new Array<string | undefined>(count).fill(undefined) };
      sets.set(id, set);
    }
    set.keys[index] = key;
  }
  return [...sets.values()].sort((a, b) => b.version - a.version || Number(b.count === preferCount) - Number(a.count === preferCount) || a.count - b.count);
}

/** How a set is named in logs and in the run summary's `resumed_from`. */
export function describeSet(set: CheckpointSet): string {
  const version = String(set.version).padStart(10, "0");
  return set.count === 1 ? `ckpt-${version}.safetensors` : `ckpt-${version}.shard-*-of-${set.count}.safetensors`;
}

/**
 * The newest complete checkpoint set that verifies, cut down to the part `shard` holds; undefined
 * when there is none (then the run starts afresh). Incomplete newer sets and unusable files are
 * reported and skipped.
 */
export async function loadShardedCheckpoint(root: BlobStore, shard: ShardIdentity, log: Logger): Promise<Checkpoint | undefined> {
  for (const set of await listCheckpointSets(root, shard.count)) {
    if (!isComplete(set)) {
      const have = set.keys.flatMap((k, i) => (k === undefined ? [] : [i]));
      log.info(`skipping checkpoint version ${set.version} of ${set.count} shards: only shard(s) ${have.join(", ")} wrote it`);
      continue;
    }
    const parts: Checkpoint[] = [];
    for (const key of set.keys) {
      const bytes = await root.get(key);
      try {
        if (bytes === undefined) throw new Error("it disappeared while loading");
        parts.push(parseCheckpoint(key, bytes));
      } catch (err) {
        log.warn(`checkpoint ${root.description}/${key} is unusable (${(err as Error).message}); trying the previous one`);
        break;
      }
    }
    if (parts.length === set.keys.length) return selectShard(set, parts, shard, log);
  }
  return undefined;
}

/** Merges the files of a set and keeps what `shard` holds under the current partition. */
function selectShard(set: CheckpointSet, parts: readonly Checkpoint[], shard: ShardIdentity, log: Logger): Checkpoint {
  const first = parts[0]!;
  const params = parts.flatMap((p) => p.params);
  const names = new Set<string>();
  for (const t of params) {
    if (names.has(t.name)) throw new Error(`checkpoint set ${describeSet(set)} holds tensor "${t.name}" in more than one shard's file`);
    names.add(t.name);
  }
  const owner = shardOfTensor(params, shard.count);
  const mine = params.filter((t) => owner.get(t.name) === shard.index);
  if (mine.length === 0) {
    throw new Error(`checkpoint set ${describeSet(set)} holds ${params.length} tensors, too few to give each of ${shard.count} shards one`);
  }
  const kept = new Set(mine.map((t) => t.name));
  const optimizerState = new Map<string, Float32Array>();
  for (const p of parts) {
    for (const [key, data] of p.optimizerState) {
      // Optimizer state is named "<tensor>/<slot>"; tensor names may themselves contain "/".
      if (kept.has(key.slice(0, key.lastIndexOf("/")))) optimizerState.set(key, data);
    }
  }
  if (set.count !== shard.count) {
    log.info(
      `checkpoint ${describeSet(set)} was written by ${set.count} shard(s); as ${shardName(shard)} this server takes ` +
        `${mine.length} of its ${params.length} tensors`,
    );
  }
  return {
    key: describeSet(set),
    // Shard 0 coordinated the run: its version, schedule position, fingerprint and slot positions are the run's.
    version: first.version,
    updatesApplied: first.updatesApplied,
    params: mine,
    optimizerState,
    slots: first.slots,
    plan: first.plan,
    // Kept by the coordinator, as in the run.
    extras: shard.index === 0 ? first.extras : { graph: undefined, state: new Map() },
    fingerprint: first.fingerprint,
    mode: first.mode,
    epochs: first.epochs,
    complete: first.complete,
  };
}

/**
 * Where one shard's Checkpointer writes: K = 1 writes to `root` itself (the unsharded names);
 * otherwise a view of `root` in which the Checkpointer's `ckpt-<version>.safetensors` is this
 * shard's `ckpt-<version>.shard-<k>-of-<K>.safetensors`, and which lists only this shard's files.
 */
export function shardCheckpointStore(root: BlobStore, shard: ShardIdentity): BlobStore {
  if (shard.count === 1) return root;
  const suffix = `.${shardName(shard)}.safetensors`;
  const outer = (key: string) => {
    if (!key.endsWith(".safetensors")) throw new Error(`unexpected checkpoint key "${key}"`);
    return key.slice(0, -".safetensors".length) + suffix;
  };
  return {
    description: `${root.description} (${shardName(shard)})`,
    put: (key, bytes) => root.put(outer(key), bytes),
    get: (key) => root.get(outer(key)),
    delete: (key) => root.delete(outer(key)),
    list: async () => (await root.list()).filter((k) => k.endsWith(suffix) && KEY.test(k)).map((k) => k.slice(0, -suffix.length) + ".safetensors"),
  };
}

/**
 * Keys (as `shardCheckpointStore` names them) that this shard's pruning must keep: its file of the
 * newest set that every shard of its layout has written, the one a restart would resume from.
 */
export async function keysToKeep(root: BlobStore, shard: ShardIdentity): Promise<Set<string>> {
  const newest = (await listCheckpointSets(root, shard.count)).find((s) => s.count === shard.count && isComplete(s));
  return new Set(newest === undefined ? [] : [`ckpt-${String(newest.version).padStart(10, "0")}.safetensors`]);
}
