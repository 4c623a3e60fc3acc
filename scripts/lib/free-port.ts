/**
 * A TCP port that was free a moment ago on 127.0.0.1 (the OS picked it; released before it
 * resolves, so a server started next can bind it). Side-effect free, for the bench harness, the
 * chaos suite and the tests alike.
 */
import { createServer } from "node:net";

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}
