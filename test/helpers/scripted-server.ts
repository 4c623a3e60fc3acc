/**
 * A plain HTTP/2 server that answers every call as a test scripts it, for what a real server
 * should never send (broken bodies, streams that stall, errors mid-stream), and the worker's
 * hand-framed channel to it.
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { Test } from "tap";
import { FastChannel } from "../../worker/src/wire/fast-channel.ts";

/** A channel to a server that answers every call with `answer`; both closed at the test's end. */
export async function scripted(t: Test, answer: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void): Promise<FastChannel> {
  const server = http2.createServer();
  const seen: http2.ServerHttp2Stream[] = [];
  server.on("stream", (stream, headers) => {
    seen.push(stream);
    stream.on("error", () => {});
    // The request body is read (and ignored) so that the client's end goes through.
    stream.resume();
    answer(stream, headers);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const channel = new FastChannel(`127.0.0.1:${(server.address() as AddressInfo).port}`, { authToken: "tok" });
  t.teardown(async () => {
    channel.close();
    for (const s of seen) if (!s.closed) s.close();
    await new Promise((resolve) => server.close(resolve));
  });
  return channel;
}

/** Answers with `body` and then `trailers` (grpc-status 0 unless given). */
export function answerWith(stream: http2.ServerHttp2Stream, body: Uint8Array, trailers: Record<string, string> = { "grpc-status": "0" }): void {
  stream.respond({ ":status": 200, "content-type": "application/grpc+proto" }, { waitForTrailers: true });
  stream.on("wantTrailers", () => stream.sendTrailers(trailers));
  stream.end(body);
}
