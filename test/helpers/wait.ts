/**
 * Waiting on state in tests: a condition polled until it holds (scripts/lib/waiting.ts's `until`),
 * failing with what was awaited. What a test waits for is the state itself, never a time that
 * "should be enough".
 */
import { until } from "../../scripts/lib/waiting.ts";

/**
 * Resolves once `condition()` holds (checked every `pollMs`); rejects naming `what` after `timeoutMs`
 * (a function: said as things are then, e.g. with a process's last lines).
 */
export async function waitUntil(condition: () => boolean | Promise<boolean>, what: string | (() => string), o: { timeoutMs?: number; pollMs?: number } = {}): Promise<void> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  if (!(await until(condition, { timeoutMs, pollMs: o.pollMs ?? 5 }))) throw new Error(`not within ${timeoutMs} ms: ${typeof what === "string" ? what : what()}`);
}
