/**
 * Child processes for the benchmark: Node scripts of this repository (scripts/lib/node-process.ts,
 * their output bounded), every one killed when the benchmark ends, however it ends; and a wait for
 * a server's port.
 */
import type { ChildProcess } from "node:child_process";
import { connect } from "node:net";
import { exitWithin, ROOT, startNode as start, type NodeProcess } from "../../scripts/lib/node-process.ts";

export { exitWithin, ROOT };

/** A benchmark process: named in messages. */
export type Child = NodeProcess;

const live = new Set<ChildProcess>();

// Never leave a child behind, whatever way the benchmark ends (Ctrl-C included).
process.once("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});
for (const [signal, n] of [["SIGINT", 2], ["SIGTERM", 15]] as const) process.once(signal, () => process.exit(128 + n));

/** Starts `node [nodeArgs] ROOT/script args` with `env` added to this process's environment. */
export function startNode(name: string, script: string, args: readonly string[], env: Record<string, string> = {}, nodeArgs: readonly string[] = []): Child {
  // Bounded, whatever a process prints.
  const p = start(script, { name, args, env, nodeArgs, maxLines: 5000 });
  live.add(p.child);
  void p.exit.then(() => live.delete(p.child));
  return p;
}

export { freePort } from "../../scripts/lib/free-port.ts";

/** Resolves once `port` on 127.0.0.1 accepts connections; rejects if `p` exits first or after `timeoutMs`. */
export async function waitForPort(p: Child, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited: number | undefined;
  void p.exit.then((code) => (exited = code));
  for (;;) {
    const open = await new Promise<boolean>((res) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        res(true);
      });
      s.once("error", () => res(false));
    });
    if (open) return;
    if (exited !== undefined) throw new Error(`${p.name} exited (${exited}) before listening; last lines:\n${p.tail()}`);
    if (Date.now() > deadline) throw new Error(`${p.name}: port ${port} not open within ${timeoutMs} ms; last lines:\n${p.tail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
