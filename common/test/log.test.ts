/**
 * Log lines: the default text format, and LOG_FORMAT=json (one JSON object per line).
 */
import t from "tap";
import { createLogger, logFormatFromEnv } from "../src/log.ts";

t.test("text is the default; json on request; levels filter both", async (t) => {
  t.equal(logFormatFromEnv({}), "text");
  t.equal(logFormatFromEnv({ LOG_FORMAT: " JSON " }), "json");
  t.equal(logFormatFromEnv({ LOG_FORMAT: "text" }), "text");

  const text: string[] = [];
  createLogger("server", "info", (l) => text.push(l), "text").info("hello");
  t.match(text[0], /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO  \[server\] hello\n$/, "text: time, level, component, message");

  const json: string[] = [];
  const log = createLogger("worker 3", "info", (l) => json.push(l), "json");
  log.debug("hidden");
  log.warn('a "quoted"\nmessage');
  t.equal(json.length, 1, "below the level nothing is written");
  t.ok(json[0]!.endsWith("\n") && !json[0]!.slice(0, -1).includes("\n"), "one line per event");
  const e = JSON.parse(json[0]!) as Record<string, string>;
  t.same({ level: e.level, component: e.component, message: e.message }, { level: "warn", component: "worker 3", message: 'a "quoted"\nmessage' });
  t.ok(!Number.isNaN(Date.parse(e.time!)), "with an ISO time");
});
