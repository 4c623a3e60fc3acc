/**
 * The transport's ceiling, server side: plain Node `http2` (cleartext), no protocol and no
 * processing. GET /pull?bytes=N answers N bytes written 1 MiB at a time from one preallocated
 * buffer; POST /push reads and discards the body. 32 MiB stream and connection windows. Prints
 * "listening on 127.0.0.1:PORT" and runs until SIGTERM.
 *
 *   node bench/h2-server.ts [--port 0]
 */
import http2 from "node:http2";
import { once } from "node:events";
import { parseArgs } from "node:util";
import { MiB } from "./lib/rounds.ts";

const { values: a } = parseArgs({ options: { port: { type: "string", default: "0" }, "write-bytes": { type: "string", default: String(MiB) } } });
const WINDOW = 32 * MiB;
const writeBytes = Number(a["write-bytes"]);
let payload = Buffer.alloc(0);

const server = http2.createServer({ settings: { initialWindowSize: WINDOW }, maxSessionMemory: 1024 });
server.on("session", (session) => session.setLocalWindowSize(WINDOW));
server.on("stream", (stream, headers) => {
  const url = new URL(headers[":path"] ?? "/", "http://x");
  if (headers[":method"] === "GET" && url.pathname === "/pull") {
    const bytes = Number(url.searchParams.get("bytes") ?? 0);
    if (payload.length < bytes) payload = Buffer.alloc(bytes, 7);
    stream.respond({ ":status": 200, "content-length": String(bytes) });
    void (async () => {
      for (let off = 0; off < bytes; off += writeBytes) {
        if (!stream.write(payload.subarray(off, Math.min(bytes, off + writeBytes)))) await once(stream, "drain");
      }
      stream.end();
    })().catch(() => stream.destroy());
  } else if (headers[":method"] === "POST" && url.pathname === "/push") {
    let received = 0;
    stream.on("data", (c: Buffer) => (received += c.length));
    stream.on("end", () => {
      stream.respond({ ":status": 200 });
      stream.end(String(received));
    });
  } else {
    stream.respond({ ":status": 404 });
    stream.end();
  }
});
server.listen(Number(a.port), "127.0.0.1", () => {
  console.log(`listening on 127.0.0.1:${(server.address() as { port: number }).port}`);
});
process.once("SIGTERM", () => {
  server.close();
  process.exit(0);
});
