/**
 * Sharded servers: a run's tensors may be split across K server processes ("shards"), each a normal
 * parameter server holding its part (see common/src/shard-partition.ts). This server's place among
 * them comes from SHARD_INDEX and SHARD_ADDRESSES; unset, it is the only shard (K = 1).
 *
 * Each shard keeps its own slots, leases and (in sync mode) its own barrier; shard 0 is also the
 * coordinator for what is not per tensor — the data positions workers resume from, their metrics
 * and the run's summary.
 */
import type { ServerEnv } from "../config.ts";

export interface ShardIdentity {
  /** 0..count-1. */
  readonly index: number;
  readonly count: number;
}

export function shardIdentity(config: Pick<ServerEnv, "SHARD_INDEX" | "SHARD_ADDRESSES">): ShardIdentity {
  return { index: config.SHARD_INDEX, count: config.SHARD_ADDRESSES?.length ?? 1 };
}

/** The shards a registration lists: SHARD_ADDRESSES, or this server's own address alone. */
export function shardList(config: Pick<ServerEnv, "SHARD_INDEX" | "SHARD_ADDRESSES">, ownAddress: string): { index: number; address: string }[] {
  return (config.SHARD_ADDRESSES ?? [ownAddress]).map((address, index) => ({ index, address }));
}

/** "shard-1-of-2": names this shard's checkpoints and its part of the exported model. */
export function shardName(s: ShardIdentity): string {
  return `shard-${s.index}-of-${s.count}`;
}
