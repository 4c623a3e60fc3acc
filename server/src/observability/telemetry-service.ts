/**
 * The TelemetryService handler: the run's history, as RunTelemetry keeps it, in protocol messages.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { TelemetryService } from "@distributed-ps/common/gen/paramserver/v1/telemetry_pb.js";
import type { RunTelemetry } from "./telemetry.ts";

/** What the dashboard shows about checkpoints; undefined when checkpointing is off. */
export interface CheckpointView {
  destination: string;
  saved: number;
  lastKey: string | undefined;
}

export function createTelemetryService(telemetry: RunTelemetry, checkpoint: () => CheckpointView | undefined = () => undefined): ServiceImpl<typeof TelemetryService> {
  return {
    getMetricsHistory(req) {
      const since = req.sinceMs;
      const now = Date.now();
      // A caller asking for the first time gets the current state at once, not a second later.
      if (telemetry.samples.length === 0) telemetry.sample();
      return {
        samples: telemetry.samples.filter((s) => s.timestampMs > since),
        reports: telemetry.reports.filter((r) => r.receivedMs > since).map((r) => ({ slot: r.slot, receivedMs: r.receivedMs, metrics: r.metrics })),
        slots: telemetry.slotRates(),
        configuration: telemetry.configuration,
        nowMs: now,
        sampleIntervalMs: telemetry.sampleIntervalMs,
        checkpoint: checkpointStatus(checkpoint(), telemetry.run.restoredFrom),
      };
    },
  };
}

function checkpointStatus(c: CheckpointView | undefined, restoredFrom: string | undefined) {
  return c === undefined
    ? { enabled: false, restoredFrom: restoredFrom ?? "" }
    : { enabled: true, destination: c.destination, saved: c.saved, lastKey: c.lastKey ?? "", restoredFrom: restoredFrom ?? "" };
}
