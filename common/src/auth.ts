/**
 * Optional shared-secret authentication: every RPC carries `authorization: Bearer <token>`, and the
 * server refuses a call without it, or with another token, as Unauthenticated. The token comes from
 * the AUTH_TOKEN environment variable on both sides (on ECS, an SSM secret, never plain text in the
 * task definition).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/** Client side: adds the token to every request. */
export function bearerToken(token: string): Interceptor {
  const value = `Bearer ${token}`;
  return (next) => async (req) => {
    req.header.set("authorization", value);
    return next(req);
  };
}

/**
 * Server side: refuses requests without the right token, comparing in constant time. The server
 * runs it on every RPC, the hand-framed bulk streams included (server/src/wire/hand-framed-call.ts).
 */
export function requireBearerToken(token: string): Interceptor {
  const expected = digest(token);
  return (next) => async (req) => {
    const header = req.header.get("authorization");
    if (header === null) throw new ConnectError("this server requires a bearer token (set AUTH_TOKEN)", Code.Unauthenticated);
    // The scheme is case-insensitive (RFC 9110 §11.1): "bearer" and "BEARER" are the same.
    const presented = /^bearer +/i.test(header) ? header.replace(/^bearer +/i, "") : "";
    // Hash both sides so the comparison takes the same time whatever the lengths.
    if (!timingSafeEqual(digest(presented), expected)) throw new ConnectError("wrong bearer token", Code.Unauthenticated);
    return next(req);
  };
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}
