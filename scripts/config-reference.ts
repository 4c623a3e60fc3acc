/**
 * Writes docs/configuration.md, and terraform/container-environment.json (the rules the Terraform
 * plan checks the containers' environment against), from the server's and the worker's
 * configuration schemas (common/src/config-reference.ts); with --check exits 1 when either file
 * differs from what the schemas say (scripts/test/config-reference.test.ts checks the same).
 *
 *   node scripts/config-reference.ts [--check]      (make config-reference)
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { configTable, environmentRules } from "@distributed-ps/common/config-reference.ts";
import { serverEnvDocs, serverEnvSchema } from "@distributed-ps/server/src/config.ts";
import { workerEnvDocs, workerEnvSchema } from "@distributed-ps/worker/src/config.ts";

export const REFERENCE_FILE = join(import.meta.dirname, "..", "docs", "configuration.md");
export const TERRAFORM_RULES_FILE = join(import.meta.dirname, "..", "terraform", "container-environment.json");

/** The reference as the schemas make it. */
export function configurationReference(): string {
  return `# Configuration reference

<!-- Made by \`make config-reference\` from server/src/config.ts and worker/src/config.ts; edit those. -->

Both programs read environment variables, validated with zod: a bad value stops the program with
exit code 2 and one message listing every bad variable and what it accepts. An empty value counts
as unset. On AWS, \`terraform plan\` checks the containers' environment against each variable's rule
first (terraform/container-environment.tf), so a bad value fails the plan, not the task.

## Server (\`node server/src/main.ts\`)

${configTable(serverEnvSchema, serverEnvDocs)}

## Worker (\`node worker/src/main.ts\`)

${configTable(workerEnvSchema, workerEnvDocs)}
`;
}

/** What each program accepts, as terraform/container-environment.tf reads it: one variable a line. */
export function terraformRules(): string {
  const program = (rules: Record<string, unknown>) =>
    `{\n${Object.entries(rules).map(([name, rule]) => `    ${JSON.stringify(name)}: ${JSON.stringify(rule)}`).join(",\n")}\n  }`;
  return `{
  "//": "Made by make config-reference from server/src/config.ts and worker/src/config.ts; edit those. What each program accepts in its environment variables that have a rule; the Terraform plan checks the task definitions' environment against it (container-environment.tf).",
  "server": ${program(environmentRules(serverEnvSchema))},
  "worker": ${program(environmentRules(workerEnvSchema))}
}
`;
}

if (import.meta.main) {
  const files = [
    [REFERENCE_FILE, configurationReference()],
    [TERRAFORM_RULES_FILE, terraformRules()],
  ] as const;
  const check = process.argv.includes("--check");
  let stale = false;
  for (const [file, made] of files) {
    if (!check) {
      writeFileSync(file, made);
      console.log(`wrote ${file}`);
    } else if (readFileSync(file, "utf8") !== made) {
      console.error(`${file} differs from the configuration schemas: run make config-reference`);
      stale = true;
    } else {
      console.log(`${file} matches the configuration schemas`);
    }
  }
  if (stale) process.exit(1);
}
