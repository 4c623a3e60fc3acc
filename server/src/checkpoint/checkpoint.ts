/**
 * A checkpoint as read back: the whole state a restarted run continues from (checkpointer.ts
 * writes and parses it; TrainingRun.restore takes it).
 */
import type { NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import type { ExtrasSnapshot } from "../run/model-extras.ts";
import type { PartRecord } from "../run/part.ts";
import type { SlotRecord } from "../run/slot.ts";

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
  /** Epochs the run trains, once it was known. */
  epochs: number | undefined;
  /** The run was complete when this was written. */
  complete: boolean;
  /** What finished workers sent for the exported model. */
  extras: ExtrasSnapshot;
}
