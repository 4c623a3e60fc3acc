/**
 * A private network for fault tests: one Linux network namespace per host (the server and each
 * worker), each with its own address on 10.231.0.0/24, wired by veth pairs to a bridge that lives
 * in a namespace of its own — nothing is added to the machine's own network, and nothing routes
 * outside. Workers find the server under the documented DNS name through /etc/netns/<ns>/hosts,
 * which `ip netns exec` mounts over /etc/hosts.
 *
 * The test itself is not on that network: `reach` gives it a loopback address that relays to a
 * host's port (for the server's GetStatus).
 *
 * Faults: `cut` takes a host's bridge port down (a pulled cable: the host's own interface loses
 * carrier, nothing answers), `restore` brings it back; `limit` rate-limits what a host sends with
 * a token bucket (tc tbf; netem is not in this kernel).
 *
 * Names carry the test process's pid and a counter, so parallel and earlier runs never collide;
 * every namespace and hosts file is removed at teardown, and ones left behind by a run that was
 * killed (its pid is gone) are removed when the next lab is made.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import type { Test } from "tap";
import { startNode, startProcess, type Proc } from "./processes.ts";
import { relay } from "./relay.ts";
import { waitUntil } from "./wait.ts";

export const SERVER_DNS_NAME = "parameter-server.distributed-ps-dev.local";

const PREFIX = "dpsnet-";
const SUBNET = "10.231.0";
const NETNS_ETC = "/etc/netns";

export interface Host {
  /** "server", "worker0", "worker1", ... */
  readonly role: string;
  /** The host's network namespace. */
  readonly ns: string;
  readonly address: string;
  /** Its veth end on the bridge (in the bridge's namespace). */
  readonly bridgePort: string;
}

export interface Lab {
  readonly server: Host;
  readonly workers: readonly Host[];
  /** Starts the program inside `host`'s namespace (killed at the test's teardown). */
  start(host: Host, script: "server/src/main.ts" | "worker/src/main.ts", env: Record<string, string>): Proc;
  /** An address on the test's own loopback that reaches `port` on `host` (while the relay is up: until teardown). */
  reach(host: Host, port: number): Promise<string>;
  /** Disconnects `host` from the bridge: its packets go nowhere and nothing reaches it. */
  cut(host: Host): void;
  restore(host: Host): void;
  /** Limits what `host` sends to `kbit` kbit/s (a token bucket with a small burst, no drops). */
  limit(host: Host, kbit: number): void;
  unlimit(host: Host): void;
}

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", timeout: 10_000, stdio: ["ignore", "pipe", "pipe"] });
}

function tc(...args: string[]): string {
  return execFileSync("tc", args, { encoding: "utf8", timeout: 10_000, stdio: ["ignore", "pipe", "pipe"] });
}

function namespaces(): string[] {
  return ip("netns", "list")
    .split("\n")
    .map((l) => l.split(" ")[0]!)
    .filter((n) => n !== "");
}

function removeNamespace(ns: string): void {
  try {
    ip("netns", "delete", ns);
  } catch {
    // already gone
  }
  rmSync(`${NETNS_ETC}/${ns}`, { recursive: true, force: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes namespaces (and hosts files) of earlier runs whose process is gone. */
function removeLeftovers(): void {
  const stale = (name: string) => {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(name);
    return m !== null && Number(m[1]) !== process.pid && !alive(Number(m[1]));
  };
  for (const ns of namespaces().filter(stale)) removeNamespace(ns);
  if (existsSync(NETNS_ETC)) for (const dir of readdirSync(NETNS_ETC).filter(stale)) rmSync(`${NETNS_ETC}/${dir}`, { recursive: true, force: true });
}

/** Why network-namespace tests cannot run here, or undefined if they can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== "linux") return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return "network namespaces need root (run the tests as root, as CI does)";
  const probe = `${PREFIX}${process.pid}-probe`;
  try {
    ip("netns", "add", probe);
    ip("-n", probe, "link", "add", "probe0", "type", "bridge");
    return undefined;
  } catch (err) {
    return `cannot create a network namespace with a bridge: ${(err as { stderr?: string }).stderr?.trim() || String(err)}`;
  } finally {
    removeNamespace(probe);
  }
}

/**
 * Relays a loopback port of the test's namespace to `port` on `h`: through a Unix socket, which is a
 * path and so reachable from every network namespace, to a relay running in `h`'s.
 */
async function reach(t: Test, h: Host, port: number): Promise<string> {
  const dir = mkdtempSync(`${tmpdir()}/${PREFIX}${process.pid}-`);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socket = `${dir}/relay.sock`;
  const inside = startNode(t, "test/fixtures/relay.ts", { args: [socket, h.address, String(port)], wrap: ["ip", "netns", "exec", h.ns] });
  await waitUntil(() => existsSync(socket), () => `the relay in ${h.ns} listening on ${socket}; its last lines:\n${inside.tail()}`);
  const outside = await relay({ host: "127.0.0.1", port: 0 }, { path: socket });
  t.teardown(() => void outside.close());
  return `127.0.0.1:${(outside.address() as AddressInfo).port}`;
}

let labs = 0;

/** Builds the network (torn down with `t`): a server host and `workers` worker hosts. */
export function createLab(t: Test, o: { workers: number }): Lab {
  removeLeftovers();
  const id = `${PREFIX}${process.pid}-${++labs}`;
  const bridgeNs = `${id}-br`;
  const host = (role: string, n: number): Host => ({ role, ns: `${id}-${role}`, address: `${SUBNET}.${n}`, bridgePort: `p-${role}` });
  const server = host("server", 1);
  const workers = Array.from({ length: o.workers }, (_, i) => host(`worker${i}`, 11 + i));
  const hosts = [server, ...workers];
  // Registered before anything exists, so a failure half-way still removes what was made.
  t.teardown(() => {
    for (const ns of [bridgeNs, ...hosts.map((h) => h.ns)]) removeNamespace(ns);
  });

  ip("netns", "add", bridgeNs);
  ip("-n", bridgeNs, "link", "add", "br0", "type", "bridge");
  ip("-n", bridgeNs, "link", "set", "br0", "up");
  const hostsFile = `127.0.0.1 localhost\n${server.address} ${SERVER_DNS_NAME}\n` + workers.map((w) => `${w.address} ${w.role}.distributed-ps-dev.local\n`).join("");
  for (const h of hosts) {
    ip("netns", "add", h.ns);
    ip("-n", h.ns, "link", "set", "lo", "up");
    ip("-n", bridgeNs, "link", "add", h.bridgePort, "type", "veth", "peer", "name", "eth0", "netns", h.ns);
    ip("-n", bridgeNs, "link", "set", h.bridgePort, "master", "br0");
    ip("-n", bridgeNs, "link", "set", h.bridgePort, "up");
    ip("-n", h.ns, "addr", "add", `${h.address}/24`, "dev", "eth0");
    ip("-n", h.ns, "link", "set", "eth0", "up");
    mkdirSync(`${NETNS_ETC}/${h.ns}`, { recursive: true });
    writeFileSync(`${NETNS_ETC}/${h.ns}/hosts`, hostsFile);
  }

  return {
    server,
    workers,
    start: (h, script, env) => startProcess(t, script, env, { wrap: ["ip", "netns", "exec", h.ns] }),
    reach: (h, port) => reach(t, h, port),
    cut: (h) => void ip("-n", bridgeNs, "link", "set", h.bridgePort, "down"),
    restore: (h) => void ip("-n", bridgeNs, "link", "set", h.bridgePort, "up"),
    // The queue holds 5 s of traffic, so TCP is slowed by the bucket, not by drops.
    limit: (h, kbit) => void tc("-n", h.ns, "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", `${kbit}kbit`, "burst", "4kb", "latency", "5s"),
    unlimit: (h) => void tc("-n", h.ns, "qdisc", "del", "dev", "eth0", "root"),
  };
}
