// freePort: processes asking at the same time are never handed the same port (the claim files),
// and a claim outlives nothing but its process.
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { claimPort, freePort } from "../lib/free-port.ts";

const MODULE = join(import.meta.dirname, "..", "lib", "free-port.ts");
const CLAIMS = join(tmpdir(), "distributed-ps-port-claims");

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

t.test("one process: every port handed out is free and different", async (t) => {
  const ports: number[] = [];
  for (let i = 0; i < 20; i++) ports.push(await freePort());
  t.equal(new Set(ports).size, ports.length, "no port twice");
  t.ok((await Promise.all(ports.map(canListen))).every(Boolean), "each can be listened on");
});

t.test("processes asking at once are handed different ports", async (t) => {
  const each = 40;
  // Each child holds its claims until all have answered: a claim lasts as long as its process.
  const script = `import { freePort } from ${JSON.stringify(MODULE)}; const ports = []; for (let i = 0; i < ${each}; i++) ports.push(await freePort()); console.log(JSON.stringify(ports)); process.stdin.resume();`;
  const children = Array.from({ length: 4 }, () => spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["pipe", "pipe", "inherit"] }));
  t.teardown(() => children.forEach((c) => c.kill()));
  const answers = children.map(
    (child) =>
      new Promise<number[]>((resolve, reject) => {
        let out = "";
        child.stdout!.on("data", (d: Buffer) => {
          out += d.toString();
          if (out.endsWith("\n")) resolve(JSON.parse(out) as number[]);
        });
        child.on("close", (code) => reject(new Error(`exited ${code} before answering`)));
      }),
  );
  const ports = (await Promise.all(answers)).flat();
  children.forEach((c) => c.stdin!.end());
  t.equal(ports.length, 4 * each);
  t.equal(new Set(ports).size, ports.length, `${ports.length} ports, all different`);
});

t.test("a claim is respected while its process lives, and taken over once it is gone", async (t) => {
  const port = await freePort();
  t.notOk(claimPort(port), "a port this process handed out is not handed out again");

  const [livePort, gonePort] = [await freePort(), await freePort()];
  const other = spawn("sleep", ["30"]);
  t.teardown(() => void other.kill());
  const gone = spawnSync("true").pid!;
  writeFileSync(join(CLAIMS, String(livePort)), String(other.pid));
  writeFileSync(join(CLAIMS, String(gonePort)), String(gone));
  t.notOk(claimPort(livePort), "another live process's claim holds");
  t.ok(claimPort(gonePort), "a gone process's claim is taken over");
  t.equal(readFileSync(join(CLAIMS, String(gonePort)), "utf8"), String(process.pid), "in this process's name");
});
