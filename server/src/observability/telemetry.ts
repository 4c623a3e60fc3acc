/**
 * What the run looked like over time: a sample of the whole run every second, every metrics report
 * the workers sent, and each slot's recent rates (throughput, step time, staleness) measured from
 * the pushes that counted. The dashboard, the Prometheus endpoint and the CloudWatch EMF lines all
 * read from here, so they agree with each other.
 *
 * Memory is bounded: when a series reaches its cap, every other point of its older half is
 * dropped, so a long run keeps its whole shape at a coarser resolution and its recent past in full.
 */
import type { RunSample as RunSampleMessage, SlotTelemetry } from "@distributed-ps/common/gen/paramserver/v1/telemetry_pb.js";
import type { MetricsRecord, PushRecord, TrainingRun } from "../run/training-run.ts";

/** A sample of the whole run: the telemetry service's RunSample, as a plain object. */
export type RunSample = Omit<RunSampleMessage, "$typeName" | "$unknown">;

export interface ReportRecord extends MetricsRecord {
  receivedMs: number;
}

/** A slot's recent rates: the telemetry service's SlotTelemetry, as a plain object. */
export type SlotRates = Omit<SlotTelemetry, "$typeName" | "$unknown">;

/** Pushes of one slot in the recent window. */
interface PushEvent {
  at: number;
  examples: number;
  staleness: number;
}

export interface TelemetryOptions {
  /** Sampling period, milliseconds. */
  sampleIntervalMs?: number;
  /** Most samples kept (an hour at one per second before thinning). */
  maxSamples?: number;
  /** Most reports kept. */
  maxReports?: number;
  /** Window over which rates are measured, milliseconds. */
  windowMs?: number;
  /** Most pushes per slot in the window. */
  windowPushes?: number;
  /** The server's configuration as the dashboard shows it (see publicConfiguration). */
  configuration?: Readonly<Record<string, string>>;
  now?: () => number;
}

/** Drops every other element of the older half of `xs`, in place, keeping those `keep` says to. */
export function thin<T>(xs: T[], keep: (x: T) => boolean = () => false): void {
  const half = Math.floor(xs.length / 2);
  const older = xs.slice(0, half).filter((x, i) => i % 2 === 0 || keep(x));
  xs.splice(0, half, ...older);
}

const mean = (xs: readonly number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);

export class RunTelemetry {
  readonly run: TrainingRun;
  readonly sampleIntervalMs: number;
  readonly configuration: Readonly<Record<string, string>>;
  readonly samples: RunSample[] = [];
  readonly reports: ReportRecord[] = [];
  /** Every counted gradient's staleness, for the Prometheus histogram (cumulative). */
  readonly stalenessCounts = new Map<number, number>();
  /** Counted gradients and their examples since the start (cumulative). */
  pushesCounted = 0;
  examplesCounted = 0;
  readonly #maxSamples: number;
  readonly #maxReports: number;
  readonly #windowMs: number;
  readonly #windowPushes: number;
  readonly #now: () => number;
  readonly #recent: PushEvent[][];
  /** Each slot's latest valid train loss and test accuracy (a report carries -1 for "not measured"). */
  readonly #lastLoss: (number | undefined)[];
  readonly #lastAccuracy: (number | undefined)[];
  readonly #timer: NodeJS.Timeout | undefined;
  readonly #onPushed = (p: PushRecord) => this.#recordPush(p);
  readonly #onMetrics = (m: MetricsRecord) => this.#recordReport(m);
  #last: { at: number; version: number; examples: number };

  constructor(run: TrainingRun, o: TelemetryOptions = {}) {
    this.run = run;
    this.sampleIntervalMs = o.sampleIntervalMs ?? 1000;
    this.configuration = o.configuration ?? {};
    this.#maxSamples = o.maxSamples ?? 3600;
    this.#maxReports = o.maxReports ?? 4000;
    this.#windowMs = o.windowMs ?? 30_000;
    this.#windowPushes = o.windowPushes ?? 64;
    this.#now = o.now ?? Date.now;
    this.#recent = run.membership.slots.map(() => []);
    this.#lastLoss = run.membership.slots.map(() => undefined);
    this.#lastAccuracy = run.membership.slots.map(() => undefined);
    this.#last = { at: this.#now(), version: run.store.version, examples: 0 };
    run.on("pushed", this.#onPushed);
    run.on("metrics", this.#onMetrics);
    if (this.sampleIntervalMs > 0) {
      this.#timer = setInterval(() => this.sample(), this.sampleIntervalMs);
      this.#timer.unref();
    }
  }

  #recordPush(p: PushRecord): void {
    const at = this.#now();
    // Slots opened after start (the worker count was raised) get their window on first use.
    const recent = (this.#recent[p.slot] ??= []);
    recent.push({ at, examples: p.examples, staleness: p.staleness });
    if (recent.length > this.#windowPushes) recent.splice(0, recent.length - this.#windowPushes);
    this.pushesCounted++;
    this.examplesCounted += p.examples;
    this.stalenessCounts.set(p.staleness, (this.stalenessCounts.get(p.staleness) ?? 0) + 1);
  }

  #recordReport(m: MetricsRecord): void {
    this.reports.push({ ...m, receivedMs: this.#now() });
    if (m.metrics.trainLoss >= 0) this.#lastLoss[m.slot] = m.metrics.trainLoss;
    if (m.metrics.testAccuracy >= 0) this.#lastAccuracy[m.slot] = m.metrics.testAccuracy;
    // Test evaluations are few (one per epoch per worker) and make the accuracy curve: keep them all.
    if (this.reports.length > this.#maxReports) thin(this.reports, (r) => r.metrics.testAccuracy >= 0);
  }

  /** Pushes of `slot` inside the window, oldest first. */
  #window(slot: number, now: number): PushEvent[] {
    return (this.#recent[slot] ?? []).filter((e) => now - e.at <= this.#windowMs);
  }

  /** The recent rates of every slot. */
  slotRates(now = this.#now()): SlotRates[] {
    return this.run.membership.slots.map((s) => {
      const events = this.#window(s.index, now);
      const last = events.at(-1);
      const first = events[0];
      // Throughput over the span the window's pushes cover (from the first push to now), so a slot
      // that stopped pushing decays to zero instead of keeping its last rate.
      const span = first === undefined ? 0 : Math.max(now - first.at, 1);
      const examples = events.slice(1).reduce((a, e) => a + e.examples, 0);
      const gaps = events.slice(1).map((e, i) => e.at - events[i]!.at);
      return {
        slot: s.index,
        samplesPerSecond: events.length < 2 ? 0 : (examples * 1000) / span,
        stepTimeMs: mean(gaps),
        meanStaleness: mean(events.map((e) => e.staleness)),
        maxStaleness: events.reduce((a, e) => Math.max(a, e.staleness), 0),
        lastStaleness: last?.staleness ?? 0,
      };
    });
  }

  /** Slot's latest reported training loss and test accuracy (undefined until reported). */
  quality(slot: number): { trainLoss: number | undefined; testAccuracy: number | undefined } {
    return { trainLoss: this.#lastLoss[slot], testAccuracy: this.#lastAccuracy[slot] };
  }

  /** Takes one sample of the whole run (the timer calls this every sampleIntervalMs). */
  sample(): RunSample {
    const run = this.run;
    const now = this.#now();
    const version = run.store.version;
    const elapsed = Math.max(now - this.#last.at, 1);
    const rates = this.slotRates(now);
    const stepping = rates.filter((r) => r.stepTimeMs > 0);
    const windowEvents = run.membership.slots.flatMap((s) => this.#window(s.index, now));
    const losses = this.#lastLoss.filter((l) => l !== undefined);
    const accuracies = this.#lastAccuracy.filter((a) => a !== undefined);
    const sample: RunSample = {
      timestampMs: now,
      version,
      updatesPerSecond: (Math.max(0, version - this.#last.version) * 1000) / elapsed,
      samplesPerSecond: ((this.examplesCounted - this.#last.examples) * 1000) / elapsed,
      stepTimeMs: mean(stepping.map((r) => r.stepTimeMs)),
      activeWorkers: run.membership.active().length,
      meanStaleness: mean(windowEvents.map((e) => e.staleness)),
      maxStaleness: windowEvents.reduce((a, e) => Math.max(a, e.staleness), 0),
      trainLoss: losses.length === 0 ? -1 : mean(losses),
      testAccuracy: accuracies.length === 0 ? -1 : mean(accuracies),
      staleGradientsRejected: run.aggregator.staleRejected,
      learningRate: run.updater.learningRate,
    };
    this.#last = { at: now, version, examples: this.examplesCounted };
    this.samples.push(sample);
    if (this.samples.length > this.#maxSamples) thin(this.samples);
    return sample;
  }

  /** The newest sample, taking one if there is none yet. */
  latest(): RunSample {
    return this.samples.at(-1) ?? this.sample();
  }

  close(): void {
    clearInterval(this.#timer);
    this.run.off("pushed", this.#onPushed);
    this.run.off("metrics", this.#onMetrics);
  }
}

/** Configuration keys that may hold secrets; never shown. */
const SECRET = /TOKEN|SECRET|PASSWORD|CREDENTIAL|KEY$/i;

/** The server's effective configuration as NAME → value strings, without secrets. */
export function publicConfiguration(config: object): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(config)) {
    if (v === undefined || SECRET.test(k)) continue;
    out[k] = String(v);
  }
  return out;
}
