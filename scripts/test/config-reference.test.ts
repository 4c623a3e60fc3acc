/**
 * docs/configuration.md says what the configuration schemas say: every variable, its default, what
 * it accepts and what it means (scripts/config-reference.ts makes it; a variable without a meaning
 * does not compile).
 */
import t from "tap";
import { readFileSync } from "node:fs";
import { serverEnvSchema } from "@distributed-ps/server/src/config.ts";
import { workerEnvSchema } from "@distributed-ps/worker/src/config.ts";
import { configurationReference, REFERENCE_FILE } from "../config-reference.ts";

t.test("docs/configuration.md is what make config-reference makes of the schemas", async (t) => {
  const file = readFileSync(REFERENCE_FILE, "utf8");
  t.ok(file === configurationReference(), "docs/configuration.md is up to date (if not: make config-reference)");
});

t.test("it lists every variable of both programs once, with the schema's default", async (t) => {
  const file = readFileSync(REFERENCE_FILE, "utf8");
  const [server, worker] = file.split("## Worker");
  for (const [program, section, schema] of [["server", server!, serverEnvSchema], ["worker", worker!, workerEnvSchema]] as const) {
    const listed = [...section.matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]);
    t.same(listed, Object.keys(schema.shape), `${program}: every variable, in the schema's order`);
  }
  t.match(server!, /^\| `SERVER_PORT` \| `8000` \| an integer from 0 to 65535 \|/m, "a default and what it accepts come from the schema");
  t.match(worker!, /^\| `PULL_DTYPE` \| `fp32` \| one of: fp32, fp16, bf16 \|/m, "the worker's too");
});
