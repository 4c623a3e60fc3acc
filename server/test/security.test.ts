/**
 * Shared-secret authentication on every RPC, and TLS, against a real server.
 */
import t, { type Test } from "tap";
import { readFileSync } from "node:fs";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectToServer, type ConnectOptions } from "@distributed-ps/common/wire/client.ts";
import { ConfigError, parseEnv } from "@distributed-ps/common/env.ts";
import { createLogger } from "@distributed-ps/common/log.ts";
import { serverEnvSchema } from "../src/config.ts";
import { startServer } from "../src/server.ts";
import { selfSignedCertificate } from "../../test/helpers/certificate.ts";

const TOKEN = "correct-horse-battery-staple";

async function serve(t: Test, env: Record<string, string>) {
  const config = parseEnv(serverEnvSchema, { SERVER_HOST: "127.0.0.1", SERVER_PORT: "0", STATUS_INTERVAL_MS: "0", ...env });
  const server = await startServer(config, createLogger("server", "error", () => {}));
  t.teardown(() => server.close());
  return server.port;
}

async function codeOf(p: Promise<unknown>): Promise<Code | "ok"> {
  return p.then(
    () => "ok" as const,
    (e: unknown) => ConnectError.from(e).code,
  );
}

const register = (port: number, o: ConnectOptions) =>
  connectToServer(`localhost:${port}`, o).register({ preferredSlot: -1, jobFingerprint: "j", workerLabel: "t" }, { timeoutMs: 5000 });

t.test("with AUTH_TOKEN set, every RPC needs the token", async (t) => {
  const port = await serve(t, { AUTH_TOKEN: TOKEN, TOTAL_WORKERS_EXPECTED: "1" });
  t.equal(await codeOf(register(port, {})), Code.Unauthenticated, "no token: Unauthenticated");
  t.equal(await codeOf(register(port, { authToken: "wrong-token-of-some-length" })), Code.Unauthenticated, "wrong token: Unauthenticated");
  t.equal(await codeOf(register(port, { authToken: TOKEN.slice(0, -1) })), Code.Unauthenticated, "a prefix of the token: Unauthenticated");
  t.equal(await codeOf(connectToServer(`localhost:${port}`, {}).getStatus({})), Code.Unauthenticated, "even the status query");
  const anonymous = connectToServer(`localhost:${port}`, {});
  t.equal(await codeOf(anonymous.setWorkerCount({ count: 0 })), Code.Unauthenticated, "no token: nobody resizes the run");
  t.equal(await codeOf(anonymous.leave({ session: { slot: 0, token: "x" } })), Code.Unauthenticated, "nor makes a worker leave");
  t.equal(await codeOf(connectToServer(`localhost:${port}`, { authToken: TOKEN }).setWorkerCount({ count: 1 })), "ok", "with the token, SetWorkerCount works");
  t.equal(await codeOf(register(port, { authToken: TOKEN })), "ok", "the right token: registered");
});

t.test("a short AUTH_TOKEN is a configuration error", async (t) => {
  t.throws(() => parseEnv(serverEnvSchema, { AUTH_TOKEN: "short" }), ConfigError, "refused");
  try {
    parseEnv(serverEnvSchema, { AUTH_TOKEN: "short" });
  } catch (err) {
    t.match((err as Error).message, /AUTH_TOKEN=.*at least 16 characters/, "the message says what it needs");
  }
});

t.test("TLS: a client trusting the certificate connects; a plaintext client does not", async (t) => {
  const { cert, key } = selfSignedCertificate(t);
  const port = await serve(t, { TLS_CERT_FILE: cert, TLS_KEY_FILE: key, AUTH_TOKEN: TOKEN, TOTAL_WORKERS_EXPECTED: "2" });
  t.equal(await codeOf(register(port, { authToken: TOKEN, tls: { ca: readFileSync(cert) } })), "ok", "TLS client with the CA registered");
  t.not(await codeOf(register(port, { authToken: TOKEN })), "ok", "a plaintext client cannot talk to the TLS server");
  t.not(await codeOf(register(port, { authToken: TOKEN, tls: {} })), "ok", "a TLS client that does not trust the self-signed certificate is refused");
});

t.test("TLS needs both the certificate and the key", async (t) => {
  t.throws(() => parseEnv(serverEnvSchema, { TLS_CERT_FILE: "/x.pem" }), /TLS_KEY_FILE.*needs both/, "a certificate without a key is refused, naming the missing variable");
});
