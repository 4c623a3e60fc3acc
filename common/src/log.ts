/**
 * Line-oriented logging for both programs: one line per event on stderr, prefixed with the time and
 * the component, so interleaved output of several processes stays readable. stdout is kept for
 * results (METRICS_JSON lines) that scripts parse.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export function createLogger(component: string, level: LogLevel = "info", sink: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const min = RANK[level];
  const emit = (lvl: LogLevel) => (message: string) => {
    if (RANK[lvl] < min) return;
    sink(`${new Date().toISOString()} ${lvl.toUpperCase().padEnd(5)} [${component}] ${message}\n`);
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

/** Prints the one machine-readable result line that run scripts collect. */
export function printMetricsJson(record: Record<string, unknown>): void {
  process.stdout.write(`METRICS_JSON: ${JSON.stringify(record)}\n`);
}
