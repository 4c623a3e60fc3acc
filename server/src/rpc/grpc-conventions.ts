/**
 * What every gRPC answer from this server does the standard way, whichever handler writes it (the
 * Connect router, the hand-framed pull and push): applied to the response before a handler sees it.
 *
 * - `grpc-message` is percent-encoded as the gRPC spec says — only bytes outside printable ASCII,
 *   and "%" — where encodeURIComponent (Connect's, and what the hand-framed paths used) also
 *   encodes ":" or ",", which clients that decode with decodeURI (grpc-js) then show as "%3A".
 * - `grpc-accept-encoding: identity` on every answer: the server takes no compression, and a client
 *   that sent some learns which encodings it may use instead.
 * - A deadline (`grpc-timeout`) is read with Connect's own parser on the hand-framed paths too, so a
 *   malformed one is refused the same way (INVALID_ARGUMENT) whichever path a call takes.
 * - A method nobody serves gets UNIMPLEMENTED as a gRPC status (a trailers-only answer), not a bare
 *   HTTP 404 that gRPC clients report as an unclear transport error.
 */
import type { Http2ServerRequest, Http2ServerResponse, OutgoingHttpHeaders } from "node:http2";
import { Code } from "@connectrpc/connect";
import { parseTimeout } from "@connectrpc/connect/protocol-grpc";

/** Whether the request speaks gRPC over HTTP/2 (not gRPC-Web, not the Connect protocol). */
export function isGrpc(req: Http2ServerRequest): boolean {
  const type = req.headers["content-type"] ?? "";
  return type === "application/grpc" || type.startsWith("application/grpc+") || type.startsWith("application/grpc;");
}

/** The spec's Percent-Encoded form of a status message. A space at either end is encoded too:
 *  HTTP/2 refuses a field value that starts or ends with whitespace, and Node then drops it. */
export function encodeGrpcMessage(message: string): string {
  const bytes = new TextEncoder().encode(message);
  let out = "";
  bytes.forEach((byte, i) => {
    const plain = byte > 0x20 && byte <= 0x7e && byte !== 0x25;
    const innerSpace = byte === 0x20 && i > 0 && i < bytes.length - 1;
    out += plain || innerSpace ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  });
  return out;
}

/** A grpc-message value in encodeURIComponent's form, re-encoded the spec's way. */
function reencode(value: unknown): unknown {
  if (typeof value !== "string") return value;
  try {
    return encodeGrpcMessage(decodeURIComponent(value));
  } catch {
    return value; // not percent-encoded text: leave it
  }
}

function conformHeaders(headers: OutgoingHttpHeaders | undefined): void {
  if (headers === undefined) return;
  if ("grpc-message" in headers) headers["grpc-message"] = reencode(headers["grpc-message"]) as string;
  // Connect lists the encodings it takes when it refuses one: none, with compression off; "identity" is the name for that.
  if ("grpc-accept-encoding" in headers && !headers["grpc-accept-encoding"]) headers["grpc-accept-encoding"] = "identity";
}

/** Makes `res` follow the conventions above for a gRPC request. */
export function conformGrpcResponse(res: Http2ServerResponse): void {
  res.setHeader("grpc-accept-encoding", "identity");
  const writeHead = res.writeHead.bind(res) as (status: number, headers?: OutgoingHttpHeaders) => Http2ServerResponse;
  res.writeHead = ((status: number, ...rest: unknown[]) => {
    const headers = rest.find((r) => typeof r === "object") as OutgoingHttpHeaders | undefined;
    conformHeaders(headers);
    return writeHead(status, headers);
  }) as typeof res.writeHead;
  const addTrailers = res.addTrailers.bind(res);
  res.addTrailers = (trailers: OutgoingHttpHeaders) => {
    conformHeaders(trailers);
    addTrailers(trailers);
  };
}

/** The answer to a path no service serves: UNIMPLEMENTED for gRPC, 404 otherwise. */
export function unknownMethod(req: Http2ServerRequest, res: Http2ServerResponse): void {
  if (!isGrpc(req)) {
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
    res.end(`no such method: ${req.url}\n`);
    return;
  }
  // Trailers-only: the status in the one HEADERS frame, which ends the stream (through the
  // compatibility API, end() would send an empty DATA frame after it, and clients then see no status).
  res.stream.respond(
    {
      ":status": 200,
      "content-type": "application/grpc+proto",
      "grpc-accept-encoding": "identity",
      "grpc-status": String(Code.Unimplemented),
      "grpc-message": encodeGrpcMessage(`unknown method ${req.url}`),
    },
    { endStream: true },
  );
}

/** The call's deadline from `grpc-timeout`, in milliseconds (undefined: none); throws
 *  INVALID_ARGUMENT for a malformed value, as Connect's handler does. */
export function requestTimeoutMs(req: Http2ServerRequest): number | undefined {
  const header = req.headers["grpc-timeout"];
  const parsed = parseTimeout(typeof header === "string" ? header : null, Number.MAX_SAFE_INTEGER);
  if (parsed.error !== undefined) throw parsed.error;
  return parsed.timeoutMs;
}
