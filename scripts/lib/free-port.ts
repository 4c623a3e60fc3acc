/**
 * A TCP port that was free a moment ago on 127.0.0.1 (the OS picked it; released before it
 * resolves, so a server started next can bind it), for the bench harness, the chaos suite and the
 * tests alike.
 *
 * Between the release and the server's bind, another process asking the OS the same way may be
 * given the same port: two test files running at once then started their servers on one port, and
 * one test talked to the other's server. So every port handed out is also claimed, as a file made
 * only if absent in a directory all of the project's processes share; a claim is taken over only
 * from a process that is gone. So it lasts as long as the process that asked, which outlives the
 * servers it starts on the port (a test file, the bench harness, the chaos suite).
 */
import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const CLAIMS = join(tmpdir(), "distributed-ps-port-claims");

export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await portTheOsPicks();
    if (claimPort(port)) return port;
  }
  throw new Error(`no TCP port on 127.0.0.1 that no other process of this project has claimed (${CLAIMS})`);
}

function portTheOsPicks(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/** Whether this process now holds `port`'s claim (a port it handed out before counts as taken). */
export function claimPort(port: number): boolean {
  mkdirSync(CLAIMS, { recursive: true });
  const file = join(CLAIMS, String(port));
  // Written whole, then linked into place: a claim is never seen without its owner's pid.
  const mine = join(CLAIMS, `.${process.pid}-${port}`);
  writeFileSync(mine, String(process.pid));
  try {
    for (let tries = 0; tries < 2; tries++) {
      try {
        linkSync(mine, file);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      const owner = Number.parseInt(readOrEmpty(file), 10);
      if (owner === process.pid || isAlive(owner)) return false;
      rmSync(file, { force: true }); // its owner is gone: claim it anew
    }
    return false;
  } finally {
    rmSync(mine, { force: true });
  }
}

function readOrEmpty(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
