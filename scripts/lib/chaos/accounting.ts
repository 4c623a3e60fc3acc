/**
 * Exact accounting of a finished run, from the server's final METRICS_JSON record
 * (server/src/observability/status-reporter.ts): every epoch trained the whole training set, every batch's
 * gradient was applied exactly once, and the counters agree with each other. Pure: a summary in,
 * the list of what is wrong out (empty when exact).
 */
import { z } from "zod";
import type { Mode } from "./plan.ts";

const count = z.number().int().nonnegative();
export const serverSummarySchema = z.object({
  version: count,
  updates_applied: count,
  total_workers: count,
  registrations: z.array(count),
  gradients_per_slot: z.array(count),
  epochs: z.array(z.object({ epoch: count, parts: count, parts_complete: count, examples: count })),
  run_complete: z.boolean(),
});
export type ServerSummary = z.output<typeof serverSummarySchema>;

export interface Expected {
  mode: Mode;
  epochs: number;
  trainExamples: number;
  batchSize: number;
  /** The most worker slots the run had at once (3, or a scale-up's count). */
  maxSlots: number;
  /** The worker count last set (3 unless SetWorkerCount changed it), or that of the older checkpoint a restart fell back to. */
  finalWorkerCount: number;
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

/**
 * What is inconsistent in `raw`, a METRICS_JSON record printed at any moment of a run (a server
 * stopped with SIGTERM prints one too): invariants that hold whenever the server's state is whole.
 *   - version == updates_applied in every mode: each applied update makes exactly one version, and
 *     a checkpoint restores both (a restart that restored one but not the other shows here);
 *   - the epochs' examples are BATCH_SIZE × the gradients applied: both count applied gradients, so
 *     a gradient counted for its slot but not for its epoch (or the other way round) shows here;
 *   - async/ssp: updates_applied == sum(gradients_per_slot), each gradient is an update of its own;
 *   - sync: gradients / slots <= updates_applied <= gradients: a step averages at most one gradient
 *     per slot and at least one;
 *   - no epoch has more parts complete than parts.
 */
export function checkConsistency(raw: unknown, mode: Mode, batchSize: number): string[] {
  const parsed = serverSummarySchema.safeParse(raw);
  if (!parsed.success) return [`the server's METRICS_JSON is not a summary: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join(", ")}`];
  const s = parsed.data;
  const problems: string[] = [];
  const gradients = sum(s.gradients_per_slot);
  if (mode === "sync") {
    const slots = Math.max(1, s.gradients_per_slot.length);
    if (s.updates_applied > gradients || s.updates_applied < Math.ceil(gradients / slots)) {
      problems.push(`sync: ${s.updates_applied} updates for ${gradients} gradients over ${slots} slots`);
    }
  } else if (s.updates_applied !== gradients) {
    problems.push(`${mode}: updates_applied = ${s.updates_applied}, but sum(gradients_per_slot) = ${gradients} [${s.gradients_per_slot.join(", ")}]: one update per gradient`);
  }
  if (s.version !== s.updates_applied) problems.push(`version ${s.version} != updates_applied ${s.updates_applied}`);
  const examples = sum(s.epochs.map((e) => e.examples));
  if (examples !== gradients * batchSize) problems.push(`the epochs count ${examples} examples, but ${gradients} gradients of ${batchSize} were applied (${gradients * batchSize})`);
  for (const ep of s.epochs) if (ep.parts_complete > ep.parts) problems.push(`epoch ${ep.epoch + 1}: ${ep.parts_complete} of ${ep.parts} parts complete`);
  return problems;
}

/**
 * What is wrong with `raw` (the METRICS_JSON record of the server that completed the run) for a
 * complete run of `e`; empty when exact. What the run must do: every epoch's examples equal the
 * training set and each of its parts was trained; the gradients sum to EPOCHS × TRAIN_EXAMPLES /
 * BATCH_SIZE; and the state is consistent (checkConsistency: async/ssp apply each gradient as an
 * update, sync makes one version per update, ...). Besides:
 *   - slot ids never grow past the largest worker count the run had (replacements reuse slots);
 *   - total_workers is the count last set with SetWorkerCount (a restart must not forget a resize),
 *     or the one of the older checkpoint a restart had to fall back to past a damaged one.
 */
export function checkAccounting(raw: unknown, e: Expected): string[] {
  const parsed = serverSummarySchema.safeParse(raw);
  if (!parsed.success) return checkConsistency(raw, e.mode, e.batchSize);
  const s = parsed.data;
  const problems: string[] = [];
  const total = (e.epochs * e.trainExamples) / e.batchSize;
  if (!s.run_complete) problems.push("run_complete is false");
  if (s.epochs.length !== e.epochs) problems.push(`${s.epochs.length} epochs recorded, expected ${e.epochs}`);
  for (const ep of s.epochs) {
    const n = ep.epoch + 1;
    if (ep.examples !== e.trainExamples) problems.push(`epoch ${n} counted ${ep.examples} examples, expected ${e.trainExamples}`);
    if (ep.parts_complete < ep.parts) problems.push(`epoch ${n}: ${ep.parts_complete} of ${ep.parts} parts complete`);
    if (ep.parts < 1 || ep.parts > e.maxSlots) problems.push(`epoch ${n} was cut into ${ep.parts} parts, outside 1..${e.maxSlots}`);
  }
  const gradients = sum(s.gradients_per_slot);
  if (gradients !== total) problems.push(`sum(gradients_per_slot) = ${gradients} [${s.gradients_per_slot.join(", ")}], expected ${total}`);
  // Counted once above already.
  problems.push(...checkConsistency(s, e.mode, e.batchSize).filter((p) => !/^the epochs count|parts complete$/.test(p)));
  if (s.gradients_per_slot.length > e.maxSlots || s.registrations.length > e.maxSlots) {
    problems.push(`${Math.max(s.gradients_per_slot.length, s.registrations.length)} slots, more than the ${e.maxSlots} the run ever had`);
  }
  if (s.total_workers !== e.finalWorkerCount) problems.push(`total_workers ${s.total_workers}, expected ${e.finalWorkerCount} (the count last set, or that of a checkpoint a restart fell back to)`);
  return problems;
}

/**
 * A server restarted on a completed run's directory restores the final checkpoint: it must report
 * the same state as the instance that completed the run.
 */
export function compareSummaries(completed: unknown, restarted: unknown): string[] {
  const a = serverSummarySchema.safeParse(completed);
  const b = serverSummarySchema.safeParse(restarted);
  if (!a.success || !b.success) return [`the restarted server's METRICS_JSON is not a summary`];
  const problems: string[] = [];
  for (const key of ["version", "updates_applied", "gradients_per_slot", "epochs", "run_complete"] as const) {
    const [x, y] = [JSON.stringify(a.data[key]), JSON.stringify(b.data[key])];
    if (x !== y) problems.push(`after the restart on the completed run ${key} is ${y}, was ${x}`);
  }
  return problems;
}
