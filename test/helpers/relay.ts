/**
 * A byte relay: each connection to where it listens is joined, both ways, to a new connection to
 * `target`, until either side ends. netns.ts reaches a lab host with two of them, one in the test's
 * network namespace and one in the host's (test/fixtures/relay.ts), joined by a Unix socket.
 */
import { connect, createServer, type ListenOptions, type NetConnectOpts, type Server, type Socket } from "node:net";

export async function relay(listen: ListenOptions, target: NetConnectOpts): Promise<Server> {
  const server = createServer((incoming) => {
    const outgoing = connect(target);
    incoming.pipe(outgoing).pipe(incoming);
    const bothEnd = (a: Socket, b: Socket) => {
      a.on("error", () => b.destroy());
      a.on("close", () => b.destroy());
    };
    bothEnd(incoming, outgoing);
    bothEnd(outgoing, incoming);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server;
}
