/**
 * Writes docs/configuration.md from the server's and the worker's configuration schemas
 * (common/src/config-reference.ts), or with --check exits 1 when the file differs from what the
 * schemas say (scripts/test/config-reference.test.ts runs that).
 *
 *   node scripts/config-reference.ts [--check]      (make config-reference)
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { configTable } from "@distributed-ps/common/config-reference.ts";
import { serverEnvDocs, serverEnvSchema } from "@distributed-ps/server/src/config.ts";
import { workerEnvDocs, workerEnvSchema } from "@distributed-ps/worker/src/config.ts";

export const REFERENCE_FILE = join(import.meta.dirname, "..", "docs", "configuration.md");

/** The reference as the schemas make it. */
export function configurationReference(): string {
  return `# Configuration reference

<!-- Made by \`make config-reference\` from server/src/config.ts and worker/src/config.ts; edit those. -->

Both programs read environment variables, validated with zod: a bad value stops the program with
exit code 2 and one message listing every bad variable and what it accepts. An empty value counts
as unset.

## Server (\`node server/src/main.ts\`)

${configTable(serverEnvSchema, serverEnvDocs)}

## Worker (\`node worker/src/main.ts\`)

${configTable(workerEnvSchema, workerEnvDocs)}
`;
}

if (import.meta.main) {
  const made = configurationReference();
  if (process.argv.includes("--check")) {
    if (readFileSync(REFERENCE_FILE, "utf8") !== made) {
      console.error(`${REFERENCE_FILE} differs from the configuration schemas: run make config-reference`);
      process.exit(1);
    }
    console.log(`${REFERENCE_FILE} matches the configuration schemas`);
  } else {
    writeFileSync(REFERENCE_FILE, made);
    console.log(`wrote ${REFERENCE_FILE}`);
  }
}
