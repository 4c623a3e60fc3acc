/**
 * Checkpoints as a test finds them on disk (CHECKPOINT_URI a local directory): what a restarted
 * server must resume from, read from the files themselves rather than from a log line.
 */
import { existsSync, readdirSync } from "node:fs";
import { checkpointVersion } from "../../server/src/checkpoint/checkpointer.ts";

/** The versions of the (unsharded) checkpoints in `dir`, oldest first; none if it does not exist. */
export function checkpointVersions(dir: string): number[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map(checkpointVersion)
    .filter((v) => v !== undefined)
    .sort((a, b) => a - b);
}

/** The newest checkpoint's version in `dir`, or undefined if there is none. */
export function newestCheckpoint(dir: string): number | undefined {
  return checkpointVersions(dir).at(-1);
}
