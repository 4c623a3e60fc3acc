/**
 * The Makefile's own rules: every target it documents is phony (a file of that name must never
 * make a target "up to date"), and `make logs` refuses a LOG it has no log group for before it
 * calls terraform or aws.
 */
import t from "tap";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "..", "..");
const makefile = readFileSync(join(ROOT, "Makefile"), "utf8");

t.test("every documented target is in .PHONY", async (t) => {
  const documented = [...makefile.matchAll(/^([a-z-]+):.*## /gm)].map((m) => m[1]!);
  const phony = new Set(/^\.PHONY:((?:.*\\\n)*.*)$/m.exec(makefile)![1]!.replace(/\\\n/g, " ").split(/\s+/).filter(Boolean));
  t.ok(documented.length >= 20, `found the documented targets (${documented.length})`);
  t.same(documented.filter((target) => !phony.has(target)), [], "none missing from .PHONY");
});

t.test("make logs with an unknown LOG says what LOG may be and runs nothing", async (t) => {
  // PATH without terraform or aws: were either called, the error would be theirs.
  const r = spawnSync("make", ["--no-print-directory", "logs", "LOG=server"], { cwd: ROOT, encoding: "utf8", env: { ...process.env, PATH: "/usr/bin:/bin" } });
  t.equal(r.status, 2, "exit 2");
  t.match(r.stderr, 'make logs: LOG is parameter_server (the default) or worker, not "server"', "one line saying what was wrong");
  t.notMatch(r.stderr, /terraform|aws:/, "neither terraform nor aws was run");
});
