/**
 * What a run's log lines say, whichever way they were collected (files of a local run, or events
 * from CloudWatch Logs): the final METRICS_JSON record of every process, and the workers' periodic
 * progress and per-epoch evaluation lines that make the curves. Text and LOG_FORMAT=json lines are
 * both understood.
 */

export interface LogLine {
  /** Epoch milliseconds (from the line itself, or from CloudWatch's event time). */
  time: number | undefined;
  /** Which process or stream it came from, for messages. */
  source: string;
  text: string;
}

export interface LossPoint {
  worker: number;
  time: number | undefined;
  epoch: number;
  version: number;
  loss: number;
  train_accuracy: number;
  samples_per_s: number;
}

export interface EvaluationPoint {
  worker: number;
  time: number | undefined;
  epoch: number;
  test_accuracy: number;
  test_loss: number;
}

export interface RunRecords {
  server: Record<string, unknown> | undefined;
  workers: Record<string, unknown>[];
  loss: LossPoint[];
  evaluations: EvaluationPoint[];
}

/** "2026-11-29T06:56:27.592Z INFO  [worker 1] message" */
const TEXT_LINE = /^(\d{4}-\d\d-\d\dT[\d:.]+Z) +\w+ +\[([^\]]+)\] (.*)$/;
const PROGRESS = /epoch (\d+)\/(\d+) batch (\d+)\/(\d+) \| version (\d+) \| loss ([\d.]+) \| train acc ([\d.]+)% \| ([\d.]+) samples\/s/;
const EPOCH_DONE = /epoch (\d+)\/(\d+) done \| test accuracy ([\d.]+)% \| test loss ([\d.]+)/;
const METRICS = /^METRICS_JSON: (\{.*\})\s*$/;

/** Splits a log line into time, component and message (undefined parts when it is not a log line). */
function parseLine(line: LogLine): { time: number | undefined; component: string | undefined; message: string } {
  const text = line.text.trim();
  const m = TEXT_LINE.exec(text);
  if (m) return { time: Date.parse(m[1]!), component: m[2], message: m[3]! };
  if (text.startsWith("{") && text.includes('"message"')) {
    try {
      const j = JSON.parse(text) as { time?: string; component?: string; message?: string };
      if (typeof j.message === "string") return { time: j.time ? Date.parse(j.time) : line.time, component: j.component, message: j.message };
    } catch {
      // not a JSON log line
    }
  }
  return { time: line.time, component: undefined, message: text };
}

export function extractRecords(lines: Iterable<LogLine>): RunRecords {
  const out: RunRecords = { server: undefined, workers: [], loss: [], evaluations: [] };
  for (const line of lines) {
    const { time, component, message } = parseLine(line);
    const metrics = METRICS.exec(message);
    if (metrics) {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(metrics[1]!) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (record.role === "server") out.server = { ...record, logged_at: time };
      else if (record.role === "worker") out.workers.push({ ...record, logged_at: time });
      continue;
    }
    const worker = component === undefined ? undefined : /^worker (\d+)$/.exec(component);
    if (!worker) continue;
    const slot = Number(worker[1]);
    let m: RegExpExecArray | null;
    if ((m = PROGRESS.exec(message))) {
      out.loss.push({
        worker: slot,
        time,
        epoch: Number(m[1]),
        version: Number(m[5]),
        loss: Number(m[6]),
        train_accuracy: Number(m[7]) / 100,
        samples_per_s: Number(m[8]),
      });
    } else if ((m = EPOCH_DONE.exec(message))) {
      out.evaluations.push({ worker: slot, time, epoch: Number(m[1]), test_accuracy: Number(m[3]) / 100, test_loss: Number(m[4]) });
    }
  }
  out.workers.sort((a, b) => Number(a.worker_id) - Number(b.worker_id));
  return out;
}

/**
 * A log group holds every run ever deployed: keep the lines of the latest one — those after the
 * previous server summary (the end of the run before) up to the latest server summary.
 */
export function latestRun(lines: readonly LogLine[]): LogLine[] {
  const ends = lines.filter((l) => METRICS.test(parseLine(l).message) && l.text.includes('"role":"server"')).map((l) => parseLine(l).time ?? 0);
  if (ends.length === 0) return [...lines];
  const end = ends[ends.length - 1]!;
  const start = ends.length > 1 ? ends[ends.length - 2]! : -Infinity;
  // Workers print their summaries just before the server's; allow the last few seconds' skew.
  return lines.filter((l) => {
    const t = parseLine(l).time ?? 0;
    return t > start && t <= end + 5000;
  });
}
