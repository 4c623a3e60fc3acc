/**
 * GET /metrics: the run in the Prometheus text exposition format (version 0.0.4), for a local
 * Prometheus or anything that scrapes it. Hand-written: a dozen metric families do not need a
 * client library, and these are read from the run on each scrape rather than updated in hot paths.
 */
import type { TrainingRun } from "../run/training-run.ts";
import type { RunTelemetry } from "./telemetry.ts";

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Record<string, string | number>;

/** Buckets of the gradient staleness histogram, in versions. */
const STALENESS_BUCKETS = [0, 1, 2, 4, 8, 16, 32, 64, 128];

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const escapeHelp = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");

function formatLabels(labels: Labels | undefined): string {
  if (labels === undefined) return "";
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(String(v))}"`);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/** Accumulates metric families; each family's samples follow its HELP and TYPE lines. */
class Exposition {
  readonly #lines: string[] = [];

  family(name: string, type: "gauge" | "counter" | "histogram", help: string, samples: readonly [Labels | undefined, number][]): void {
    this.#lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) this.#lines.push(`${name}${formatLabels(labels)} ${formatValue(value)}`);
  }

  histogram(name: string, help: string, counts: ReadonlyMap<number, number>, buckets: readonly number[]): void {
    this.#lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} histogram`);
    let total = 0;
    let sum = 0;
    for (const [value, n] of counts) {
      total += n;
      sum += value * n;
    }
    for (const le of buckets) {
      let below = 0;
      for (const [value, n] of counts) if (value <= le) below += n;
      this.#lines.push(`${name}_bucket{le="${le}"} ${below}`);
    }
    this.#lines.push(`${name}_bucket{le="+Inf"} ${total}`, `${name}_sum ${sum}`, `${name}_count ${total}`);
  }

  text(): string {
    return `${this.#lines.join("\n")}\n`;
  }
}

export function renderPrometheus(run: TrainingRun, telemetry: RunTelemetry, now = Date.now()): string {
  const e = new Exposition();
  const slots = run.membership.slots;
  const sample = telemetry.latest();
  const rates = telemetry.slotRates(now);
  const slotLabels = (i: number) => ({ slot: i });

  e.family("ps_parameter_version", "gauge", "Current parameter version (sync: completed steps; async/ssp: applied gradients).", [[undefined, run.store.version]]);
  e.family("ps_updates_applied_total", "counter", "Parameter updates applied by the optimizer.", [[undefined, run.updater.updatesApplied]]);
  e.family("ps_gradients_counted_total", "counter", "Gradients that counted, by slot (across every holder of the slot).", slots.map((s) => [slotLabels(s.index), s.pushes]));
  e.family("ps_steps_missed_total", "counter", "Sync steps applied without the slot's gradient, which had not come within SYNC_TIMEOUT_MS.", slots.map((s) => [slotLabels(s.index), s.stepsMissed]));
  e.family("ps_examples_counted_total", "counter", "Training examples in gradients that counted since the server started.", [[undefined, telemetry.examplesCounted]]);
  e.family("ps_stale_gradients_rejected_total", "counter", "Gradients refused as too stale (async/ssp) or late for their step (sync).", [[undefined, run.aggregator.staleRejected]]);
  // A retired slot counts as "retired" (or "retiring" while its worker finishes its part), not by its lease state.
  const stateOf = (s: (typeof slots)[number]) => (s.retired && s.state !== "finished" ? (s.state === "active" ? "retiring" : "retired") : s.state);
  e.family(
    "ps_workers",
    "gauge",
    "Worker slots by state.",
    (["active", "finished", "free", "retiring", "retired"] as const).map((state) => [{ state }, slots.filter((s) => stateOf(s) === state).length]),
  );
  e.family("ps_samples_per_second", "gauge", "Training examples per second in counted gradients, all slots, over the last sampling period.", [[undefined, sample.samplesPerSecond]]);
  e.family("ps_updates_per_second", "gauge", "Parameter updates per second over the last sampling period.", [[undefined, sample.updatesPerSecond]]);
  e.family("ps_learning_rate", "gauge", "Learning rate the next update will use.", [[undefined, run.updater.learningRate]]);
  e.family("ps_run_complete", "gauge", "1 once the run is complete: every part of the data trained, no live worker left.", [[undefined, run.complete ? 1 : 0]]);
  e.family("ps_uptime_seconds", "gauge", "Seconds since the server started.", [[undefined, (now - run.startedAt) / 1000]]);
  e.family("ps_worker_samples_per_second", "gauge", "Training examples per second in the slot's recent counted gradients.", rates.map((r) => [slotLabels(r.slot), r.samplesPerSecond]));
  e.family("ps_worker_step_seconds", "gauge", "Mean time between the slot's recent counted pushes, seconds.", rates.map((r) => [slotLabels(r.slot), r.stepTimeMs / 1000]));
  e.family("ps_worker_staleness", "gauge", "Mean staleness of the slot's recent counted gradients, in versions.", rates.map((r) => [slotLabels(r.slot), r.meanStaleness]));
  e.family(
    "ps_worker_last_seen_seconds",
    "gauge",
    "Seconds since the slot's holder was last heard from (NaN for a slot never held).",
    slots.map((s) => [slotLabels(s.index), s.lastSeen === 0 ? NaN : Math.max(0, now - s.lastSeen) / 1000]),
  );
  e.family(
    "ps_worker_train_loss",
    "gauge",
    "The slot's latest reported training loss (NaN until reported).",
    slots.map((s) => [slotLabels(s.index), telemetry.quality(s.index).trainLoss ?? NaN]),
  );
  e.family(
    "ps_worker_test_accuracy",
    "gauge",
    "The slot's latest test accuracy, 0..1 (NaN until evaluated).",
    slots.map((s) => [slotLabels(s.index), telemetry.quality(s.index).testAccuracy ?? NaN]),
  );
  e.histogram("ps_gradient_staleness", "Staleness of counted gradients, in versions.", telemetry.stalenessCounts, STALENESS_BUCKETS);
  return e.text();
}
