/**
 * The run's progress as the server reports it: GetStatus every 100 ms on the newest server
 * instance while it runs and is not paused, each call bounded by a deadline. Progress is the number
 * of gradients applied so far (the sum of the slots' pushes), which a restarted server resumes from
 * its checkpoint; faults fire when it passes their fraction of the run's total.
 */
import { SlotState, type GetStatusResponse } from "../../../common/src/gen/paramserver/v1/parameter_server_pb.js";
import { connectToServer, type ParameterServerClient } from "../../../common/src/wire/client.ts";
import type { ChaosProcess, Cluster } from "./cluster.ts";

const POLL_MS = 100;
const CALL_TIMEOUT_MS = 1000;

export class ServerWatch {
  readonly #cluster: Cluster;
  /** One client per server instance: a new process gets a fresh HTTP/2 connection. */
  readonly #clients = new WeakMap<ChaosProcess, ParameterServerClient>();
  #timer: NodeJS.Timeout | undefined;
  #polling = false;
  /** Gradients applied, as of the newest answer. */
  gradients = 0;
  /** The newest answer and which instance gave it. */
  status: GetStatusResponse | undefined;
  statusFrom: string | undefined;

  constructor(cluster: Cluster) {
    this.#cluster = cluster;
  }

  start(): void {
    this.#timer = setInterval(() => void this.#poll(), POLL_MS);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** A client for the newest server instance, if it is running and not paused. */
  client(): ParameterServerClient | undefined {
    const server = this.#cluster.server;
    if (server === undefined || !server.alive || server.paused) return undefined;
    let client = this.#clients.get(server);
    if (client === undefined) {
      client = connectToServer(`127.0.0.1:${this.#cluster.place.port}`);
      this.#clients.set(server, client);
    }
    return client;
  }

  async #poll(): Promise<void> {
    if (this.#polling) return;
    const client = this.client();
    if (client === undefined) return;
    this.#polling = true;
    try {
      const status = await client.getStatus({}, { timeoutMs: CALL_TIMEOUT_MS });
      this.status = status;
      this.statusFrom = this.#cluster.server?.name;
      this.gradients = status.slots.reduce((n, s) => n + s.pushes, 0);
    } catch {
      // Not listening yet, restarting, or stopped mid-call: the next poll will tell.
    } finally {
      this.#polling = false;
    }
  }

  /** One line about the newest answer: version, gradients, slot states. */
  describe(): string {
    const s = this.status;
    if (s === undefined) return "no GetStatus answer yet";
    const states = s.slots.map((slot) => `${slot.slot}:${(SlotState[slot.state] ?? String(slot.state)).toLowerCase()}${slot.retiring ? "(retiring)" : ""}`).join(" ");
    return `${this.statusFrom}: version ${s.version}, ${this.gradients} gradients, slots ${states}, complete ${s.runComplete}`;
  }
}

