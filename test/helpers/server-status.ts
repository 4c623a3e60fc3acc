/**
 * A server process's state through its own API (GetStatus), for tests that wait on what the server
 * holds — which slot a worker has, how far it trained, whether a lease ran out — rather than on
 * the wording of a log line.
 */
import { SlotState, type GetStatusResponse, type SlotStatus } from "@distributed-ps/common/gen/paramserver/v1/parameter_server_pb.js";
import { connectToServer, type ParameterServerClient } from "@distributed-ps/common/wire/client.ts";
import type { Test } from "tap";
import { startProcess, type Proc } from "./processes.ts";
import { waitUntil } from "./wait.ts";

export { SlotState };

export class ServerStatus {
  readonly #client: ParameterServerClient;
  #last: GetStatusResponse | undefined;

  constructor(address: string) {
    this.#client = connectToServer(address);
  }

  /** The state now, or undefined while the server does not answer (not started, restarting). */
  async get(): Promise<GetStatusResponse | undefined> {
    try {
      this.#last = await this.#client.getStatus({}, { timeoutMs: 2000 });
      return this.#last;
    } catch {
      return undefined;
    }
  }

  /** Resolves with the first state for which `ok` holds; rejects naming `what` (and the last state seen) after `timeoutMs`. */
  async until(ok: (s: GetStatusResponse) => boolean, what: string, timeoutMs = 30_000): Promise<GetStatusResponse> {
    let found: GetStatusResponse | undefined;
    await waitUntil(
      async () => {
        const s = await this.get();
        if (s !== undefined && ok(s)) found = s;
        return found !== undefined;
      },
      () => `${what}; last status: ${this.#last === undefined ? "none" : describe(this.#last)}`,
      { timeoutMs, pollMs: 25 },
    );
    return found!;
  }
}

/** The slot held by the worker process `pid` (workers label themselves "pid <pid>" by default). */
export function slotOfWorker(s: GetStatusResponse, pid: number): SlotStatus | undefined {
  return s.slots.find((slot) => slot.workerLabel === `pid ${pid}` && slot.state === SlotState.ACTIVE);
}

/**
 * Resolves once worker process `pid` holds `slot` by a registration newer than `left` (the slot as
 * its previous holder left it) and has had a gradient applied there: a worker rejoined, or a
 * replacement, is training in the slot. Resolves with the slot then.
 */
export async function trainingAgainIn(status: ServerStatus, slot: number, pid: number, left: SlotStatus, timeoutMs: number): Promise<SlotStatus> {
  const deadline = Date.now() + timeoutMs;
  const held = (s: GetStatusResponse) => {
    const x = slotOfWorker(s, pid);
    return x?.slot === slot && x.registrations > left.registrations ? x : undefined;
  };
  const joined = held(await status.until((s) => held(s) !== undefined, `worker pid ${pid} registered into slot ${slot} again`, timeoutMs))!;
  // Counted from its registration: the previous holder's last gradient may be applied after `left`.
  const training = await status.until((s) => (held(s)?.pushes ?? 0) > joined.pushes, `a gradient of worker pid ${pid} applied in slot ${slot}`, Math.max(0, deadline - Date.now()));
  return held(training)!;
}

function describe(s: GetStatusResponse): string {
  const slots = s.slots
    .map((x) => `${x.slot}:${SlotState[x.state]}${x.abandoned ? "/abandoned" : ""}(${x.workerLabel}, ${x.pushes} pushes, ${x.registrations} reg., epoch ${(x.position?.epoch ?? 0) + 1} batch ${x.position?.batch ?? 0})`)
    .join(" ");
  return `version ${s.version}, slots ${slots}`;
}

/**
 * Starts the server with `env` (a loopback environment, onLoopback's) and resolves once it answers
 * GetStatus (through `status`, when the test watches the server with one of its own).
 */
export async function startAnsweringServer(t: Test, env: Record<string, string>, status = new ServerStatus(`127.0.0.1:${env.SERVER_PORT}`)): Promise<Proc> {
  return (await startServerForStatus(t, env, status)).server;
}

/**
 * startAnsweringServer, and the state of its first answer: for a server restarted from a
 * checkpoint, the version it resumed at, before any worker could move it (a new run answers
 * uninitialised, at version 0).
 */
export async function startServerForStatus(
  t: Test,
  env: Record<string, string>,
  status = new ServerStatus(`127.0.0.1:${env.SERVER_PORT}`),
): Promise<{ server: Proc; first: GetStatusResponse }> {
  const server = startProcess(t, "server/src/main.ts", env);
  return { server, first: await firstAnswer(server, status) };
}

/** The first GetStatus answer of `server` (a process just started) through `status`; rejects if it exits first. */
export function firstAnswer(server: Proc, status: ServerStatus): Promise<GetStatusResponse> {
  return untilWhileRunning(server, status, () => true, "the server answering", 10_000, () => `last lines:\n${server.tail()}`);
}

/** A server (startAnsweringServer) and one worker, resolved once the worker's first gradient is applied. */
export async function serverWithTrainingWorker(
  t: Test,
  serverEnv: Record<string, string>,
  workerEnv: Record<string, string>,
): Promise<{ server: Proc; worker: Proc; status: ServerStatus }> {
  const status = new ServerStatus(`127.0.0.1:${serverEnv.SERVER_PORT}`);
  const server = await startAnsweringServer(t, serverEnv, status);
  const worker = startProcess(t, "worker/src/main.ts", workerEnv);
  const lines = () => `the worker's last lines:\n${worker.tail()}\nthe server's:\n${server.tail()}`;
  await untilWhileRunning(server, status, (s) => s.version > 0, "the worker training", 60_000, lines);
  return { server, worker, status };
}

/**
 * The first state of `server` for which `ok` holds; rejects, saying `lines()`, if the process exits
 * first (a server that cannot start, or gives up) or `timeoutMs` passes.
 */
async function untilWhileRunning(server: Proc, status: ServerStatus, ok: (s: GetStatusResponse) => boolean, what: string, timeoutMs: number, lines: () => string): Promise<GetStatusResponse> {
  let exitCode: number | undefined;
  void server.exit.then((code) => (exitCode = code));
  let found: GetStatusResponse | undefined;
  const done = async () => {
    if (exitCode !== undefined) return true;
    const s = await status.get();
    if (s !== undefined && ok(s)) found = s;
    return found !== undefined;
  };
  await waitUntil(done, () => `${what}; ${lines()}`, { timeoutMs, pollMs: 25 });
  if (exitCode !== undefined) throw new Error(`the server exited (${exitCode}) before ${what}; ${lines()}`);
  return found!;
}
