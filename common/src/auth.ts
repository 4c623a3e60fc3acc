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

/** Server side: refuses requests without the right token, comparing in constant time. */
export function requireBearerToken(token: string): Interceptor {
  const check = bearerTokenCheck(token);
  return (next) => async (req) => {
    check(req.header.get("authorization"));
    return next(req);
  };
}

/**
 * A check of an `authorization` header value against `token` that throws Unauthenticated; for
 * handlers outside Connect's interceptor chain (the fast pull path).
 */
export function bearerTokenCheck(token: string): (authorization: string | null | undefined) => void {
  const expected = digest(token);
  return (header) => {
    if (header === null || header === undefined) throw new ConnectError("this server requires a bearer token (set AUTH_TOKEN)", Code.Unauthenticated);
    // The scheme is case-insensitive (RFC 9110 §11.1): "bearer" and "BEARER" are the same.
    const presented = /^bearer +/i.test(header) ? header.replace(/^bearer +/i, "") : "";
    // Hash both sides so the comparison takes the same time whatever the lengths.
    if (!timingSafeEqual(digest(presented), expected)) throw new ConnectError("wrong bearer token", Code.Unauthenticated);
  };
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}
