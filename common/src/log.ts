/**
 * Line-oriented logging for both programs: one line per event on stderr, prefixed with the time and
 * the component, so interleaved output of several processes stays readable. stdout is kept for
 * results (METRICS_JSON lines) that scripts parse.
 *
 * LOG_FORMAT=json writes each event as one JSON object instead ({"time","level","component",
 * "message"}), for log stores that index fields (CloudWatch Logs Insights, Loki). The programs'
 * configuration schemas validate the variable; here anything but "json" means text.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export type LogFormat = "text" | "json";

/** The format LOG_FORMAT asks for (text unless it says json). */
export function logFormatFromEnv(env: NodeJS.ProcessEnv = process.env): LogFormat {
  return env.LOG_FORMAT?.trim().toLowerCase() === "json" ? "json" : "text";
}

export function createLogger(
  component: string,
  level: LogLevel = "info",
  sink: (line: string) => void = (l) => process.stderr.write(l),
  format: LogFormat = logFormatFromEnv(),
): Logger {
  const min = RANK[level];
  const emit = (lvl: LogLevel) => (message: string) => {
    if (RANK[lvl] < min) return;
    const time = new Date().toISOString();
    sink(
      format === "json"
        ? `${JSON.stringify({ time, level: lvl, component, message })}\n`
        : `${time} ${lvl.toUpperCase().padEnd(5)} [${component}] ${message}\n`,
    );
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

/** Prints the one machine-readable result line that run scripts collect. */
export function printMetricsJson(record: Record<string, unknown>): void {
  process.stdout.write(`METRICS_JSON: ${JSON.stringify(record)}\n`);
}
