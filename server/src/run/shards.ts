/**
 * Sharded servers: a run's tensors may be split across K server processes ("shards"), each a normal
 * parameter server holding its part (see common/src/shard-partition.ts). This server's place among
 * them comes from SHARD_INDEX and SHARD_ADDRESSES; unset, it is the only shard (K = 1).
 *
 * Each shard keeps its own slots, leases and (in sync mode) its own barrier; shard 0 is also the
 * coordinator for what is not per tensor — the data positions workers resume from, their metrics
 * and the run's summary.
 */
/** Where this server stands among the shards (SHARD_INDEX, SHARD_ADDRESSES). */
export interface ShardLayout {
  /** This server's shard, 0 if unsharded. */
  readonly index: number;
  /** Every shard's address, shard 0 first; undefined: unsharded. */
  readonly addresses: readonly string[] | undefined;
}

export interface ShardIdentity {
  /** 0..count-1. */
  readonly index: number;
  readonly count: number;
}

export function shardIdentity(layout: ShardLayout): ShardIdentity {
  return { index: layout.index, count: layout.addresses?.length ?? 1 };
}

/** The shards a registration lists: every shard's address, or this server's own address alone. */
export function shardList(layout: ShardLayout, ownAddress: string): { index: number; address: string }[] {
  return (layout.addresses ?? [ownAddress]).map((address, index) => ({ index, address }));
}

/** "shard-1-of-2": names this shard's checkpoints and its part of the exported model. */
export function shardName(s: ShardIdentity): string {
  return `shard-${s.index}-of-${s.count}`;
}
