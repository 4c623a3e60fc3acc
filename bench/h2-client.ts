/**
 * The transport's ceiling, client side: one HTTP/2 session to bench/h2-server.ts doing the
 * benchmark's round with no protocol and no processing — GET the pull's bytes, then POST the push's
 * bytes in 1 MiB writes — with 32 MiB windows. After `--warmup` rounds it waits for `--start-at`
 * (epoch ms, so every client's window starts together), then runs rounds until `--end-at` and prints
 * one BENCH_ROUNDS line.
 *
 *   node bench/h2-client.ts --address 127.0.0.1:PORT --get-bytes 44695848 --post-bytes 22347924
 */
import http2 from "node:http2";
import { once } from "node:events";
import { parseArgs } from "node:util";
import { epochMs, MiB, printRecord } from "./lib/rounds.ts";

const { values: a } = parseArgs({
  options: {
    address: { type: "string", default: "127.0.0.1:8000" },
    "get-bytes": { type: "string", default: String(45 * MiB) },
    "post-bytes": { type: "string", default: String(22 * MiB) },
    "write-bytes": { type: "string", default: String(MiB) },
    warmup: { type: "string", default: "2" },
    "start-at": { type: "string", default: "0" },
    "end-at": { type: "string", default: "0" },
    "max-rounds": { type: "string", default: "100000" },
    label: { type: "string", default: `h2-client-${process.pid}` },
  },
});
const WINDOW = 32 * MiB;
const getBytes = Number(a["get-bytes"]);
const postBytes = Number(a["post-bytes"]);
const writeBytes = Number(a["write-bytes"]);
const warmup = Number(a.warmup);
const body = Buffer.alloc(postBytes, 3);

const session = http2.connect(`http://${a.address}`, { settings: { initialWindowSize: WINDOW }, maxSessionMemory: 1024 });
session.on("error", (err) => {
  console.error(`session error: ${err.message}`);
  process.exit(1);
});
await once(session, "connect");
session.setLocalWindowSize(WINDOW);

async function get(): Promise<void> {
  const req = session.request({ ":method": "GET", ":path": `/pull?bytes=${getBytes}` });
  let received = 0;
  req.on("data", (c: Buffer) => (received += c.length));
  await once(req, "end");
  if (received !== getBytes) throw new Error(`GET returned ${received} bytes, expected ${getBytes}`);
}

async function post(): Promise<void> {
  const req = session.request({ ":method": "POST", ":path": "/push" });
  let answer = "";
  req.setEncoding("utf8");
  req.on("data", (c: string) => (answer += c));
  const ended = once(req, "end");
  for (let off = 0; off < postBytes; off += writeBytes) {
    if (!req.write(body.subarray(off, Math.min(postBytes, off + writeBytes)))) await once(req, "drain");
  }
  req.end();
  await ended;
  if (Number(answer) !== postBytes) throw new Error(`POST: server received ${answer} bytes, expected ${postBytes}`);
}

for (let i = 0; i < warmup; i++) {
  await get();
  await post();
}
const startAt = Number(a["start-at"]);
if (startAt > epochMs()) await new Promise((r) => setTimeout(r, startAt - epochMs()));
const endAt = Number(a["end-at"]);
const maxRounds = Number(a["max-rounds"]);

const pullMs: number[] = [];
const pushMs: number[] = [];
const startMs = epochMs();
const cpuAtStart = process.cpuUsage();
while (pullMs.length < maxRounds && (pullMs.length === 0 || epochMs() < endAt)) {
  let t = performance.now();
  await get();
  pullMs.push(performance.now() - t);
  t = performance.now();
  await post();
  pushMs.push(performance.now() - t);
}
const endMs = epochMs();
const cpu = process.cpuUsage(cpuAtStart);
session.close();
printRecord({
  label: a.label!,
  rounds: pullMs.length,
  warmup,
  pull_ms: pullMs,
  push_ms: pushMs,
  pull_bytes: getBytes,
  push_bytes: postBytes,
  start_ms: startMs,
  end_ms: endMs,
  cpu_s: (cpu.user + cpu.system) / 1e6,
  retries: 0,
  max_rss_bytes: process.resourceUsage().maxRSS * 1024,
});
