/**
 * CloudWatch Embedded Metric Format (EMF): JSON log lines from which CloudWatch Logs extracts
 * metrics by itself, so graphs and alarms appear on ECS with no PutMetricData calls and no extra
 * permissions — the task's stdout already goes to CloudWatch Logs.
 *
 * Specification:
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
 * (root member "_aws" with Timestamp in epoch milliseconds and CloudWatchMetrics directives; each
 * directive's Dimensions is an array of dimension-key arrays, each key naming a string member of
 * the root; each metric name names a numeric member of the root; at most 100 metrics per
 * directive; units from CloudWatch's list).
 *
 * One run-level document per status interval (dimension: Mode), plus one per slot that has pushed
 * (dimensions: Mode, Slot) for per-worker throughput and staleness. Dimension values are few
 * (modes × slots), so the number of custom metrics stays small.
 */
import type { TrainingRun } from "../run/training-run.ts";
import type { RunTelemetry } from "./telemetry.ts";

/** Units CloudWatch accepts (MetricDatum.Unit). */
export const CLOUDWATCH_UNITS = [
  "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
  "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
  "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second",
  "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
] as const;
export type CloudWatchUnit = (typeof CLOUDWATCH_UNITS)[number];

export interface EmfMetric {
  name: string;
  unit: CloudWatchUnit;
  value: number;
}

export interface EmfDocument {
  _aws: {
    Timestamp: number;
    CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit: CloudWatchUnit }[] }[];
  };
  [member: string]: unknown;
}

/**
 * One EMF document: the metrics and dimensions become root members, the directive names them.
 * Metrics without a finite value are left out (CloudWatch rejects NaN), and so is a document left
 * with none.
 */
export function emfDocument(o: {
  namespace: string;
  timestampMs: number;
  dimensions: Record<string, string>;
  metrics: readonly EmfMetric[];
  /** Extra root members for people reading the log (not metrics). */
  properties?: Record<string, string | number | boolean>;
}): EmfDocument | undefined {
  const metrics = o.metrics.filter((m) => Number.isFinite(m.value));
  if (metrics.length === 0) return undefined;
  if (metrics.length > 100) throw new Error(`an EMF directive holds at most 100 metrics, got ${metrics.length}`);
  return {
    ...o.properties,
    ...o.dimensions,
    ...Object.fromEntries(metrics.map((m) => [m.name, m.value])),
    _aws: {
      Timestamp: Math.round(o.timestampMs),
      CloudWatchMetrics: [
        {
          Namespace: o.namespace,
          Dimensions: [Object.keys(o.dimensions)],
          Metrics: metrics.map((m) => ({ Name: m.name, Unit: m.unit })),
        },
      ],
    },
  };
}

/** The documents describing the run now: one for the run, one per slot that has pushed. */
export function runEmfDocuments(run: TrainingRun, telemetry: RunTelemetry, namespace: string, now = Date.now(), s = telemetry.latest()): EmfDocument[] {
  const mode = run.options.mode;
  const slots = run.membership.slots;
  const docs: (EmfDocument | undefined)[] = [
    emfDocument({
      namespace,
      timestampMs: now,
      dimensions: { Mode: mode },
      properties: { event: "run_metrics", total_workers: slots.length, run_complete: run.complete },
      metrics: [
        { name: "Version", unit: "Count", value: s.version },
        { name: "StepTime", unit: "Milliseconds", value: s.stepTimeMs > 0 ? s.stepTimeMs : NaN },
        { name: "UpdatesPerSecond", unit: "Count/Second", value: s.updatesPerSecond },
        { name: "Throughput", unit: "Count/Second", value: s.samplesPerSecond },
        { name: "ActiveWorkers", unit: "Count", value: run.membership.active().length },
        { name: "FinishedWorkers", unit: "Count", value: slots.filter((x) => x.state === "finished").length },
        { name: "MeanStaleness", unit: "Count", value: s.meanStaleness },
        { name: "MaxStaleness", unit: "Count", value: s.maxStaleness },
        { name: "StaleGradientsRejected", unit: "Count", value: s.staleGradientsRejected },
        { name: "TrainLoss", unit: "None", value: s.trainLoss >= 0 ? s.trainLoss : NaN },
        { name: "TestAccuracy", unit: "Percent", value: s.testAccuracy >= 0 ? s.testAccuracy * 100 : NaN },
        { name: "LearningRate", unit: "None", value: s.learningRate },
      ],
    }),
  ];
  for (const r of telemetry.slotRates(now)) {
    const slot = slots[r.slot];
    if (slot === undefined || slot.pushes === 0) continue;
    const q = telemetry.quality(r.slot);
    docs.push(
      emfDocument({
        namespace,
        timestampMs: now,
        dimensions: { Mode: mode, Slot: String(r.slot) },
        properties: { event: "worker_metrics", state: slot.state, worker_label: slot.label, gradients: slot.pushes },
        metrics: [
          { name: "WorkerThroughput", unit: "Count/Second", value: r.samplesPerSecond },
          { name: "WorkerStepTime", unit: "Milliseconds", value: r.stepTimeMs > 0 ? r.stepTimeMs : NaN },
          { name: "WorkerStaleness", unit: "Count", value: r.meanStaleness },
          { name: "WorkerTrainLoss", unit: "None", value: q.trainLoss ?? NaN },
          { name: "WorkerTestAccuracy", unit: "Percent", value: q.testAccuracy === undefined ? NaN : q.testAccuracy * 100 },
        ],
      }),
    );
  }
  return docs.filter((d) => d !== undefined);
}

/** Writes the run's EMF documents, one JSON line each, every `intervalMs`. */
export class EmfEmitter {
  readonly #timer: NodeJS.Timeout | undefined;
  readonly #emit: (fresh: boolean) => void;

  constructor(o: { run: TrainingRun; telemetry: RunTelemetry; namespace: string; intervalMs: number; write?: (line: string) => void }) {
    const write = o.write ?? ((line: string) => process.stdout.write(line));
    this.#emit = (fresh: boolean) => {
      if (!o.run.store.initialized) return;
      const sample = fresh ? o.telemetry.sample() : o.telemetry.latest();
      for (const doc of runEmfDocuments(o.run, o.telemetry, o.namespace, Date.now(), sample)) write(`${JSON.stringify(doc)}\n`);
    };
    if (o.intervalMs > 0) {
      this.#timer = setInterval(() => this.#emit(false), o.intervalMs);
      this.#timer.unref();
    }
  }

  /** Emits once now, from a fresh sample (on shutdown, so the final state reaches CloudWatch). */
  flush(): void {
    this.#emit(true);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
