/**
 * A self-signed certificate for localhost (EC P-256, one day), made with openssl in the test's
 * own directory: what every TLS test serves and trusts.
 */
import type { Test } from "tap";
import { execFileSync } from "node:child_process";
import { join } from "node:path";

export interface Certificate {
  /** The PEM certificate's path (the server's TLS_CERT_FILE, and what a client trusts). */
  cert: string;
  /** The PEM private key's path (TLS_KEY_FILE). */
  key: string;
}

export function selfSignedCertificate(t: Test): Certificate {
  const dir = t.testdir();
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout", key, "-out", cert],
    { stdio: "ignore" },
  );
  return { cert, key };
}
