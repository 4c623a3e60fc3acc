/**
 * Which server shard holds which tensor. With K shards the model's tensors are split into K parts of
 * nearly equal size, and every process that needs the split computes it from the same input — the
 * tensor layout, names and shapes — so workers (splitting uploads and gradients) and servers
 * (restoring a checkpoint written with another shard count) always agree without talking.
 *
 * The split is greedy: tensors from the largest down (ties by name), each onto the shard holding the
 * fewest elements so far (ties: the lowest index). It depends only on the set of (name, shape), not
 * on the order the tensors are listed in. The largest shard exceeds the ideal total/K by less than
 * the largest tensor.
 */
import { elementCount } from "./named-tensor.ts";

/** A tensor's name and shape: all the partition looks at. */
export interface TensorSpec {
  readonly name: string;
  readonly shape: readonly number[];
}

/** One shard's part of a partition. */
export interface ShardPart {
  /** Names of the tensors this shard holds, in the order the layout listed them. */
  readonly names: string[];
  /** Elements those tensors hold together. */
  readonly elements: number;
}

/** Splits `layout` into `shardCount` parts (see the file comment). A part may be empty only when there are fewer tensors than shards. */
export function partitionTensors(layout: readonly TensorSpec[], shardCount: number): ShardPart[] {
  if (!Number.isInteger(shardCount) || shardCount < 1) throw new RangeError(`shard count must be a positive integer, got ${shardCount}`);
  const sizes = new Map<string, number>();
  for (const t of layout) {
    if (sizes.has(t.name)) throw new Error(`duplicate tensor name "${t.name}" in the layout`);
    sizes.set(t.name, elementCount(t.shape));
  }
  // Plain code-unit comparison, not localeCompare: the order must not depend on the machine's locale.
  const order = [...sizes].sort(([a, sa], [b, sb]) => sb - sa || (a < b ? -1 : a > b ? 1 : 0));
  const loads = new Array<number>(shardCount).fill(0);
  const owner = new Map<string, number>();
  for (const [name, size] of order) {
    let best = 0;
    for (let k = 1; k < shardCount; k++) if (loads[k]! < loads[best]!) best = k;
    owner.set(name, best);
    loads[best] = loads[best]! + size;
  }
  const parts = loads.map((elements) => ({ names: [] as string[], elements }));
  for (const t of layout) parts[owner.get(t.name)!]!.names.push(t.name);
  return parts;
}

/** The shard index of every tensor name, for `partitionTensors(layout, shardCount)`. */
export function shardOfTensor(layout: readonly TensorSpec[], shardCount: number): Map<string, number> {
  const owner = new Map<string, number>();
  partitionTensors(layout, shardCount).forEach((part, k) => {
    for (const name of part.names) owner.set(name, k);
  });
  return owner;
}

/**
 * Splits `tensors` by `owner` (tensor name -> shard index) into `shardCount` lists, keeping their
 * order. Throws for a tensor no shard owns.
 */
export function splitByShard<T extends { readonly name: string }>(tensors: readonly T[], owner: ReadonlyMap<string, number>, shardCount: number): T[][] {
  const out = Array.from({ length: shardCount }, () => [] as T[]);
  for (const t of tensors) {
    const k = owner.get(t.name);
    if (k === undefined || k >= shardCount) throw new Error(`tensor "${t.name}" belongs to no shard of ${shardCount}`);
    out[k]!.push(t);
  }
  return out;
}
