/**
 * GET /metrics: the Prometheus text exposition format 0.0.4, parsed strictly here (HELP and TYPE
 * once per family and before its samples, valid names and label syntax, parseable values, counters
 * ending in _total, histogram buckets cumulative and ending in +Inf), and the numbers it reports.
 */
import t from "tap";
import { renderPrometheus } from "../../server/src/observability/prometheus.ts";
import { RunTelemetry } from "../../server/src/observability/telemetry.ts";
import { gradient, startTestServer, workersWithParameters } from "../helpers/test-server.ts";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses exposition text; throws on the first violation of the format. */
function parseExposition(text: string): { types: Map<string, string>; samples: Sample[] } {
  if (!text.endsWith("\n")) throw new Error("the exposition must end with a newline");
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Sample[] = [];
  const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  const familyOf = (name: string) => {
    for (const suffix of ["_bucket", "_sum", "_count"]) {
      const base = name.slice(0, -suffix.length);
      if (name.endsWith(suffix) && types.get(base) === "histogram") return base;
    }
    return name;
  };
  for (const line of text.slice(0, -1).split("\n")) {
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string];
      if (!NAME.test(name)) throw new Error(`bad metric name ${name}`);
      if (kind === "HELP") {
        if (helps.has(name)) throw new Error(`second HELP for ${name}`);
        helps.add(name);
      } else {
        if (types.has(name)) throw new Error(`second TYPE for ${name}`);
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(rest)) throw new Error(`bad type ${rest}`);
        if (samples.some((s) => familyOf(s.name) === name)) throw new Error(`TYPE for ${name} after its samples`);
        types.set(name, rest);
      }
      continue;
    }
    if (line.startsWith("#") || line === "") throw new Error(`unexpected line ${JSON.stringify(line)}`);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`bad sample line ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    if (m[3] !== undefined && m[3] !== "") {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
      let at = 0;
      while (at < m[3].length) {
        re.lastIndex = at;
        const l = re.exec(m[3]);
        if (!l) throw new Error(`bad labels in ${JSON.stringify(line)}`);
        labels[l[1]!] = l[2]!.replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
        at = re.lastIndex;
      }
    }
    const raw = m[4]!;
    const value = raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : raw === "NaN" ? NaN : Number(raw);
    if (Number.isNaN(value) && raw !== "NaN") throw new Error(`bad value ${raw}`);
    const family = familyOf(m[1]!);
    if (!types.has(family)) throw new Error(`sample ${m[1]} before its TYPE line`);
    samples.push({ name: m[1]!, labels, value });
  }
  for (const [name, type] of types) {
    if (type === "counter" && !name.endsWith("_total")) throw new Error(`counter ${name} does not end in _total`);
    if (type === "histogram") {
      const buckets = samples.filter((s) => s.name === `${name}_bucket`);
      if (buckets.at(-1)?.labels.le !== "+Inf") throw new Error(`histogram ${name} does not end with le="+Inf"`);
      for (let i = 1; i < buckets.length; i++) if (buckets[i]!.value < buckets[i - 1]!.value) throw new Error(`histogram ${name} buckets are not cumulative`);
      const count = samples.find((s) => s.name === `${name}_count`)?.value;
      if (count !== buckets.at(-1)!.value) throw new Error(`histogram ${name}: _count differs from the +Inf bucket`);
    }
  }
  return { types, samples };
}

t.test("the parser refuses malformed expositions", async (t) => {
  t.throws(() => parseExposition("a 1"), /newline/);
  t.throws(() => parseExposition("a 1\n"), /before its TYPE/);
  t.throws(() => parseExposition("# TYPE a counter\na 1\n"), /_total/);
  t.throws(() => parseExposition('# TYPE a gauge\na{x="1} 1\n'), /bad (labels|sample)/);
  t.throws(() => parseExposition("# TYPE a gauge\na one\n"), /bad value/);
  t.same(parseExposition('# TYPE a gauge\na{x="q\\"uote"} NaN\n').samples[0]?.labels, { x: 'q"uote' }, "escaped quotes parse");
});

t.test("/metrics describes the run in valid exposition format", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "async" });
  const run = ts.server.run;
  const telemetry = new RunTelemetry(run, { sampleIntervalMs: 0 });
  t.teardown(() => telemetry.close());

  t.doesNotThrow(() => parseExposition(renderPrometheus(run, telemetry)), "valid before any worker registered");

  const [w0, w1] = await workersWithParameters(ts, 2);
  for (let i = 0; i < 3; i++) await w0!.push(gradient(0.01), i, { exampleCount: 16 });
  await w1!.push(gradient(0.01), 0, { exampleCount: 16 }); // 3 versions stale
  await w1!.reportMetrics({ epoch: 0, version: 4, trainLoss: 0.25, trainAccuracy: 0.9, testAccuracy: -1, testLoss: -1, samplesPerSecond: 1, timestampMs: Date.now() });
  telemetry.sample();

  const { types, samples } = parseExposition(renderPrometheus(run, telemetry));
  const get = (name: string, labels: Record<string, string> = {}) =>
    samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
  t.equal(types.get("ps_updates_applied_total"), "counter", "updates are a counter");
  t.equal(get("ps_parameter_version"), 4, "version");
  t.equal(get("ps_updates_applied_total"), 4, "updates applied");
  t.equal(get("ps_workers", { state: "active" }), 2, "active workers");
  t.equal(get("ps_gradients_counted_total", { slot: "0" }), 3, "gradients of slot 0");
  t.equal(get("ps_steps_missed_total", { slot: "1" }), 0, "sync steps slot 1 missed");
  t.equal(get("ps_examples_counted_total"), 64, "examples counted");
  t.equal(get("ps_worker_train_loss", { slot: "1" }), 0.25, "slot 1's reported loss");
  t.ok(Number.isNaN(get("ps_worker_train_loss", { slot: "0" })), "NaN for a slot that has not reported");
  t.equal(get("ps_gradient_staleness_bucket", { le: "2" }), 3, "three gradients were at most 2 versions stale");
  t.equal(get("ps_gradient_staleness_bucket", { le: "4" }), 4, "all four at most 4");
  t.equal(get("ps_gradient_staleness_sum"), 3, "staleness sum");
  t.equal(get("ps_run_complete"), 0, "not complete");
});
