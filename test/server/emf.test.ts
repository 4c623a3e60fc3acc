/**
 * The server's CloudWatch Embedded Metric Format lines, checked against the specification's rules
 * (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html),
 * written out here independently of the emitter: a document that breaks one is silently ignored by
 * CloudWatch, so the graphs would just never appear.
 */
import t from "tap";
import { emfDocument, EmfEmitter, runEmfDocuments } from "../../server/src/observability/emf.ts";
import { RunTelemetry } from "../../server/src/observability/telemetry.ts";
import { gradient, startTestServer, workersWithParameters } from "../helpers/test-server.ts";

/** CloudWatch's unit names (MetricDatum.Unit), as the specification's JSON schema lists them. */
const UNITS = new Set(
  "Seconds Microseconds Milliseconds Bytes Kilobytes Megabytes Gigabytes Terabytes Bits Kilobits Megabits Gigabits Terabits Percent Count Bytes/Second Kilobytes/Second Megabytes/Second Gigabytes/Second Terabytes/Second Bits/Second Kilobits/Second Megabits/Second Gigabits/Second Terabits/Second Count/Second None".split(
    " ",
  ),
);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Every rule of the specification a document breaks (empty when valid). */
function specViolations(line: string, now = Date.now()): string[] {
  const problems: string[] = [];
  let root: unknown;
  try {
    // "The LogEvent message MUST be a valid JSON object with no additional data at the beginning or end."
    root = JSON.parse(line);
  } catch {
    return ["not valid JSON"];
  }
  if (line !== line.trim()) problems.push("data before or after the JSON object");
  if (!isObject(root)) return ["the root is not a JSON object"];
  if (Buffer.byteLength(line) > 1024 * 1024) problems.push("larger than a CloudWatch Logs event (1 MB)");
  const aws = root._aws;
  if (!isObject(aws)) return [...problems, "no _aws metadata object"];
  const ts = aws.Timestamp;
  if (typeof ts !== "number" || !Number.isInteger(ts)) problems.push("_aws.Timestamp is not an integer number of milliseconds");
  else if (Math.abs(ts - now) > 2 * 3600_000) problems.push(`_aws.Timestamp ${ts} is not epoch milliseconds near now`);
  const directives = aws.CloudWatchMetrics;
  if (!Array.isArray(directives) || directives.length === 0) return [...problems, "_aws.CloudWatchMetrics is not a non-empty array"];
  for (const [i, d] of directives.entries()) {
    const at = `CloudWatchMetrics[${i}]`;
    if (!isObject(d)) {
      problems.push(`${at} is not an object`);
      continue;
    }
    if (typeof d.Namespace !== "string" || d.Namespace.length < 1 || d.Namespace.length > 255 || !/^[a-zA-Z0-9._#:/-]+$/.test(d.Namespace)) {
      problems.push(`${at}.Namespace is not a valid namespace`);
    }
    if (!Array.isArray(d.Dimensions) || d.Dimensions.length < 1) problems.push(`${at}.Dimensions is not a non-empty array of dimension sets`);
    for (const set of Array.isArray(d.Dimensions) ? d.Dimensions : []) {
      if (!Array.isArray(set)) {
        problems.push(`${at}: a dimension set is not an array`);
        continue;
      }
      // "A DimensionSet MUST NOT contain more than 30 dimension keys."
      if (set.length > 30) problems.push(`${at}: a dimension set has ${set.length} keys (at most 30)`);
      for (const key of set) {
        if (typeof key !== "string" || key.length < 1 || key.length > 255) problems.push(`${at}: dimension key ${JSON.stringify(key)} is not a string of 1..255`);
        // "The target member MUST have a string value."
        else if (typeof root[key] !== "string") problems.push(`${at}: dimension ${key} has no string member on the root`);
        else if ((root[key] as string).trim() === "" || !/^[\x20-\x7e]+$/.test(root[key] as string)) problems.push(`${at}: dimension ${key} value is not printable ASCII`);
      }
    }
    if (!Array.isArray(d.Metrics)) {
      problems.push(`${at}.Metrics is not an array`);
      continue;
    }
    // "This array MUST NOT contain more than 100 MetricDefinition objects."
    if (d.Metrics.length > 100) problems.push(`${at}.Metrics has ${d.Metrics.length} definitions (at most 100)`);
    for (const m of d.Metrics) {
      if (!isObject(m) || typeof m.Name !== "string" || m.Name.length < 1 || m.Name.length > 255) {
        problems.push(`${at}: a metric definition has no valid Name`);
        continue;
      }
      if (m.Unit !== undefined && (typeof m.Unit !== "string" || !UNITS.has(m.Unit))) problems.push(`${at}: metric ${m.Name} has unit ${String(m.Unit)}, not a CloudWatch unit`);
      if (m.StorageResolution !== undefined && m.StorageResolution !== 1 && m.StorageResolution !== 60) problems.push(`${at}: metric ${m.Name} StorageResolution must be 1 or 60`);
      // "A metric target MUST be a numeric value or an array of numeric values" (at most 100).
      const v = root[m.Name];
      const values = Array.isArray(v) ? v : [v];
      if (values.length > 100) problems.push(`metric ${m.Name} has ${values.length} values (at most 100)`);
      if (!values.every((x) => typeof x === "number" && Number.isFinite(x))) problems.push(`metric ${m.Name} has no finite numeric member on the root (${JSON.stringify(v)})`);
    }
  }
  return problems;
}

t.test("the validator itself rejects what the specification forbids", async (t) => {
  const good = { _aws: { Timestamp: Date.now(), CloudWatchMetrics: [{ Namespace: "NS", Dimensions: [["Mode"]], Metrics: [{ Name: "X", Unit: "Count" }] }] }, Mode: "sync", X: 1 };
  t.same(specViolations(JSON.stringify(good)), [], "a valid document passes");
  const bad = (patch: (d: typeof good & Record<string, unknown>) => void) => {
    const d = structuredClone(good) as typeof good & Record<string, unknown>;
    patch(d);
    return specViolations(JSON.stringify(d));
  };
  t.match(bad((d) => delete (d as Record<string, unknown>).X), [/metric X has no finite numeric member/], "a metric without its member");
  t.match(bad((d) => (d.X = "1" as never)), [/metric X has no finite numeric member/], "a metric whose member is a string");
  t.match(bad((d) => delete (d as Record<string, unknown>).Mode), [/dimension Mode has no string member/], "a dimension without its member");
  t.match(bad((d) => (d._aws.CloudWatchMetrics[0]!.Metrics[0]!.Unit = "Furlongs")), [/not a CloudWatch unit/], "an unknown unit");
  t.match(bad((d) => (d._aws.Timestamp = Math.floor(Date.now() / 1000))), [/not epoch milliseconds/], "a timestamp in seconds");
  t.match(
    bad((d) => {
      d._aws.CloudWatchMetrics[0]!.Metrics = Array.from({ length: 101 }, (_, i) => ({ Name: `M${i}`, Unit: "Count" }));
      for (let i = 0; i < 101; i++) (d as Record<string, unknown>)[`M${i}`] = i;
    }),
    [/at most 100/],
    "more than 100 metrics in a directive",
  );
  t.match(
    bad((d) => {
      d._aws.CloudWatchMetrics[0]!.Dimensions = [Array.from({ length: 31 }, (_, i) => `D${i}`)];
      for (let i = 0; i < 31; i++) (d as Record<string, unknown>)[`D${i}`] = "v";
    }),
    [/at most 30/],
    "more than 30 dimensions in a set",
  );
  t.match(specViolations(`x ${JSON.stringify(good)}`), ["not valid JSON"], "text before the object");
});

t.test("emfDocument leaves out non-finite values and refuses more than 100 metrics", async (t) => {
  const doc = emfDocument({
    namespace: "NS",
    timestampMs: Date.now(),
    dimensions: { Mode: "sync" },
    metrics: [
      { name: "A", unit: "Count", value: 1 },
      { name: "B", unit: "None", value: NaN },
    ],
  });
  t.same(doc?._aws.CloudWatchMetrics[0]?.Metrics, [{ Name: "A", Unit: "Count" }], "NaN metrics are not declared");
  t.notOk(doc && "B" in doc, "nor written");
  t.equal(emfDocument({ namespace: "NS", timestampMs: 0, dimensions: {}, metrics: [{ name: "A", unit: "Count", value: NaN }] }), undefined, "a document with no metric is not written");
  t.throws(() =>
    emfDocument({ namespace: "NS", timestampMs: 0, dimensions: {}, metrics: Array.from({ length: 101 }, (_, i) => ({ name: `M${i}`, unit: "Count" as const, value: i })) }),
  );
});

t.test("the lines a training server emits satisfy the specification and carry the run's numbers", async (t) => {
  const ts = await startTestServer(t, { TOTAL_WORKERS_EXPECTED: "2", SERVER_MODE: "async" });
  const run = ts.server.run;
  const telemetry = new RunTelemetry(run, { sampleIntervalMs: 0 });
  t.teardown(() => telemetry.close());
  const lines: string[] = [];
  const emitter = new EmfEmitter({ run, telemetry, namespace: "DistributedPS/test", intervalMs: 0, write: (l) => lines.push(l) });

  emitter.flush();
  t.same(lines, [], "nothing is emitted before the parameters exist");

  const [w0, w1] = await workersWithParameters(ts, 2);
  for (let i = 0; i < 4; i++) await w0!.push(gradient(0.01), i, { exampleCount: 32 });
  await w1!.push(gradient(0.01), 1, { exampleCount: 32 }); // 3 versions stale
  await w0!.reportMetrics({ epoch: 0, version: 4, trainLoss: 0.7, trainAccuracy: 0.6, testAccuracy: 0.55, testLoss: 0.9, samplesPerSecond: 100, timestampMs: Date.now() });
  emitter.flush(); // from a fresh sample: everything since the telemetry started
  emitter.stop();

  t.ok(lines.length >= 3, `one run document and one per slot that pushed (${lines.length} lines)`);
  t.ok(lines.every((l) => l.endsWith("\n") && !l.slice(0, -1).includes("\n")), "each document is exactly one line");
  for (const line of lines) t.same(specViolations(line.trimEnd()), [], `valid EMF: ${line.slice(0, 90)}…`);

  const docs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const runDoc = docs.find((d) => d.event === "run_metrics")!;
  t.equal(runDoc.Mode, "async", "the run document's dimension is the mode");
  t.equal(runDoc.Version, 5, "it carries the version");
  t.equal(runDoc.ActiveWorkers, 2, "the worker count");
  t.equal(runDoc.MaxStaleness, 3, "the staleness");
  t.equal(runDoc.TrainLoss, 0.7, "the loss");
  t.ok(Math.abs((runDoc.TestAccuracy as number) - 55) < 1e-9, "the accuracy in percent");
  t.ok((runDoc.Throughput as number) > 0, "and the throughput");
  const names = (runDoc._aws as { CloudWatchMetrics: { Metrics: { Name: string }[] }[] }).CloudWatchMetrics[0]!.Metrics.map((m) => m.Name);
  for (const n of ["StepTime", "TrainLoss", "TestAccuracy", "MeanStaleness", "Throughput", "ActiveWorkers"]) t.ok(names.includes(n), `${n} is declared`);
  const slot1 = docs.find((d) => d.event === "worker_metrics" && d.Slot === "1")!;
  t.equal(slot1.WorkerStaleness, 3, "the per-slot document carries that slot's staleness");
  t.same(
    (slot1._aws as { CloudWatchMetrics: { Dimensions: string[][] }[] }).CloudWatchMetrics[0]!.Dimensions,
    [["Mode", "Slot"]],
    "under the dimensions Mode and Slot",
  );
  t.same(
    runEmfDocuments(run, telemetry, "NS").map((d) => specViolations(JSON.stringify(d))),
    docs.map(() => []),
    "documents built directly are valid too",
  );
});
