/**
 * Waiting on state in tests: a condition polled until it holds, failing with what was awaited. The
 * only bounded sleep the tests use; what a test waits for is the state itself, never a time that
 * "should be enough".
 */

/**
 * Resolves once `condition()` holds (checked every `pollMs`); rejects naming `what` after `timeoutMs`
 * (a function: said as things are then, e.g. with a process's last lines).
 */
export async function waitUntil(condition: () => boolean | Promise<boolean>, what: string | (() => string), o: { timeoutMs?: number; pollMs?: number } = {}): Promise<void> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${typeof what === "string" ? what : what()}`);
    await new Promise((r) => setTimeout(r, o.pollMs ?? 5));
  }
}
