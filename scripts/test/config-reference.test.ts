/**
 * docs/configuration.md says what the configuration schemas say: every variable, its default, what
 * it accepts and what it means (scripts/config-reference.ts makes it; a variable without a meaning
 * does not compile). terraform/container-environment.json, the rules the Terraform plan checks the
 * containers' environment against, is made from the same schemas and says what they accept.
 */
import t from "tap";
import { readFileSync } from "node:fs";
import { serverEnvSchema } from "@distributed-ps/server/src/config.ts";
import { workerEnvSchema } from "@distributed-ps/worker/src/config.ts";
import { environmentRules } from "@distributed-ps/common/config-reference.ts";
import { configurationReference, REFERENCE_FILE, TERRAFORM_RULES_FILE, terraformRules } from "../config-reference.ts";

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

t.test("terraform/container-environment.json is what make config-reference makes of the schemas", async (t) => {
  t.ok(readFileSync(TERRAFORM_RULES_FILE, "utf8") === terraformRules(), "terraform/container-environment.json is up to date (if not: make config-reference)");
  const rules = JSON.parse(readFileSync(TERRAFORM_RULES_FILE, "utf8")) as Record<string, Record<string, unknown>>;
  t.same(rules.server, environmentRules(serverEnvSchema), "the server's rules");
  t.same(rules.worker, environmentRules(workerEnvSchema), "the worker's rules");
  t.same(rules.server!.LEASE_MS, { kind: "integer", min: 100, max: 3_600_000, accepts: "an integer from 100 to 3600000" }, "an integer's range");
  t.same(rules.worker!.PULL_DTYPE, { kind: "word", values: ["fp32", "fp16", "bf16"], accepts: "one of: fp32, fp16, bf16" }, "a word's list");
});

// The rules are data beside the schemas: they must say what the schemas do, at the edges.
t.test("every rule says what its variable's schema accepts", async (t) => {
  for (const [program, schema] of [["server", serverEnvSchema], ["worker", workerEnvSchema]] as const) {
    const fields = schema.shape as Record<string, { safeParse(v: unknown): { success: boolean } }>;
    const rules = Object.entries(environmentRules(schema));
    t.ok(rules.length >= 20, `${program}: most variables have a rule (${rules.length})`);
    for (const [name, rule] of rules) {
      const accepts = (v: string) => fields[name]!.safeParse(v).success;
      if (rule.kind === "word") {
        t.ok(rule.values.every((v) => accepts(v) && accepts(` ${v.toUpperCase()} `)), `${program} ${name}: every word, in any case`);
        t.notOk(accepts("no-such-word"), `${program} ${name}: nothing else`);
        continue;
      }
      t.ok(accepts(String(rule.min)) && accepts(String(rule.max)), `${program} ${name}: ${rule.min} and ${rule.max}`);
      const below = rule.kind === "integer" ? rule.min - 1 : rule.min - Math.max(1e-9, Math.abs(rule.min) / 2);
      t.notOk(accepts(String(below)) || accepts(String(rule.max * 2 + 1)), `${program} ${name}: nothing outside`);
      if (rule.kind === "integer" && rule.max > rule.min) t.notOk(accepts(`${rule.min}.5`), `${program} ${name}: no fraction`);
    }
  }
});
