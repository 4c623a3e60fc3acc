/**
 * `make scale WORKERS=n`: changes the worker count of a running job (SetWorkerCount), for runs the
 * server cannot follow by itself — on ECS it follows the worker service's desired count, so there
 * use `aws ecs update-service --desired-count n` or `terraform apply -var worker_count=n` instead.
 *
 *   node scripts/scale.ts --workers n [--address host:port]
 *
 * More slots: start that many more workers (`node worker/src/main.ts` with the same settings); they
 * register into the new slots and join at the next epoch boundary. Fewer: the retired workers finish
 * the part of the data they are training and exit 0; what they leave goes to the others.
 */
import { parseArgs } from "node:util";
import { ConnectError } from "@connectrpc/connect";
import { connectToServer } from "../common/src/wire/client.ts";

const USAGE = "usage: node scripts/scale.ts --workers n [--address host:port]   (AUTH_TOKEN from the environment)";

const { values: args } = parseArgs({
  options: {
    workers: { type: "string", default: process.env.WORKERS },
    address: { type: "string", default: process.env.ADDRESS ?? "localhost:8000" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}
const count = Number(args.workers);
if (args.workers === undefined || !Number.isInteger(count) || count < 0) {
  process.stderr.write(`scale: --workers (or WORKERS) must be a whole number >= 0, got ${JSON.stringify(args.workers ?? "")}\n${USAGE}\n`);
  process.exit(2);
}

const client = connectToServer(args.address, { authToken: process.env.AUTH_TOKEN || undefined });
try {
  const r = await client.setWorkerCount({ count }, { timeoutMs: 10_000 });
  const parts = [`the job at ${args.address} now has ${r.count} worker slot(s)`];
  if (r.opened.length > 0) parts.push(`opened slot(s) ${r.opened.join(", ")}: start ${r.opened.length} more worker(s)`);
  if (r.retired.length > 0) parts.push(`retired slot(s) ${r.retired.join(", ")}: their workers stop after their current part of the data`);
  console.log(parts.join("; "));
} catch (err) {
  const e = ConnectError.from(err);
  process.stderr.write(`scale: ${args.address} refused or could not be reached: ${e.message}\n`);
  process.exit(1);
}
