/**
 * A real S3-compatible server (s3rver) on an ephemeral loopback port, for the tests that store
 * checkpoints and exports through the S3 API.
 */
import S3rver from "s3rver";
import type { Test } from "tap";

/** Starts s3rver with `bucket`, stops it at the test's end; returns its endpoint (S3_ENDPOINT). */
export async function startS3rver(t: Test, bucket = "ps-bucket"): Promise<string> {
  const s3 = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: t.testdir(), configureBuckets: [{ name: bucket, configs: [] }] });
  const { port } = await s3.run();
  t.teardown(() => s3.close());
  // s3rver's fixed credentials, for the SDK's default chain.
  process.env.AWS_ACCESS_KEY_ID = "S3RVER";
  process.env.AWS_SECRET_ACCESS_KEY = "S3RVER";
  return `http://127.0.0.1:${port}`;
}
