import t from "tap";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { createLogger } from "@distributed-ps/common/log.ts";
import { DatasetError, loadDataset } from "../src/data/load-dataset.ts";
import { sha256, tinyCifarArchive, tinyIdxFiles } from "./fixtures/tiny-datasets.ts";

// s3rver checks signatures against these fixed credentials; the worker uses the default chain (env).
process.env.AWS_ACCESS_KEY_ID = "S3RVER";
process.env.AWS_SECRET_ACCESS_KEY = "S3RVER";
process.env.AWS_REGION = "us-east-1";

const log = createLogger("test", "warn", () => {});
const fast = { attempts: 2, baseDelayMs: 5, maxDelayMs: 20 };

/** s3rver ships no type declarations: the little of it used here. */
interface S3rverServer {
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
}
const moduleName = "s3rver";
const { default: S3rver } = (await import(moduleName)) as { default: new (options: object) => S3rverServer };

const root = t.testdir();
const s3rver = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory: join(root, "s3"), configureBuckets: [{ name: "datasets", configs: [] }] });
const { port } = await s3rver.run();
t.teardown(() => s3rver.close());
const endpoint = `http://127.0.0.1:${port}`;
const client = new S3Client({ endpoint, forcePathStyle: true, region: "us-east-1" });
t.teardown(() => client.destroy());

const idx = tinyIdxFiles(40, 10);
for (const [name, bytes] of idx) await client.send(new PutObjectCommand({ Bucket: "datasets", Key: `mnist/v1/${name}`, Body: bytes }));
const archive = readFileSync(await tinyCifarArchive(root, "cifar10", 3, 4));
await client.send(new PutObjectCommand({ Bucket: "datasets", Key: "cifar/c10.tar.gz", Body: archive }));
const idxSums = [...idx].map(([name, bytes]) => `${name}=${sha256(bytes)}`).join(",");

t.test("MNIST from an s3:// prefix (S3_ENDPOINT, path style, default credential chain)", async (t) => {
  const data = await loadDataset({ DATASET: "mnist", SEED: 1, DATA_DIR: join(root, "cache1"), DATASET_URL: "s3://datasets/mnist/v1/", S3_ENDPOINT: endpoint, DATASET_SHA256: idxSums }, log, fast);
  t.equal(data.train.count, 40, "40 training images");
  t.equal(data.test.count, 10, "10 test images");
  t.match(data.description, /^mnist from s3:\/\/datasets\/mnist\/v1\/: 40 train \/ 10 test/, "the description names the source");
  t.same(readFileSync(join(root, "cache1", "mnist", "train-labels-idx1-ubyte.gz")), idx.get("train-labels-idx1-ubyte.gz"), "cached byte for byte");
});

t.test("CIFAR-10 from an s3:// object key", async (t) => {
  const data = await loadDataset({ DATASET: "cifar10", SEED: 1, DATA_DIR: join(root, "cache2"), DATASET_URL: "s3://datasets/cifar/c10.tar.gz", S3_ENDPOINT: endpoint, DATASET_SHA256: sha256(archive) }, log, fast);
  t.equal(data.train.count, 15, "5 batches of 3");
  t.equal(data.test.count, 4);
});

t.test("S3 errors name the object and are not retried when permanent", async (t) => {
  const missing = await loadDataset({ DATASET: "cifar10", SEED: 1, DATA_DIR: join(root, "cache3"), DATASET_URL: "s3://datasets/cifar/nope.tar.gz", S3_ENDPOINT: endpoint }, log, fast).catch((e: unknown) => e);
  t.type(missing, DatasetError);
  t.match((missing as Error).message, /^s3:\/\/datasets\/cifar\/nope\.tar\.gz: NoSuchKey/, "no such key");
  await t.rejects(
    loadDataset({ DATASET: "cifar10", SEED: 1, DATA_DIR: join(root, "cache3"), DATASET_URL: "s3://no-such-bucket/c10.tar.gz", S3_ENDPOINT: endpoint }, log, fast),
    /^s3:\/\/no-such-bucket\/c10\.tar\.gz: NoSuchBucket/, "no such bucket");
  await t.rejects(
    loadDataset({ DATASET: "cifar10", SEED: 1, DATA_DIR: join(root, "cache3"), DATASET_URL: "s3://datasets/cifar/c10.tar.gz", S3_ENDPOINT: endpoint }, log, fast),
    /^s3:\/\/datasets\/cifar\/c10\.tar\.gz: SHA-256 mismatch: expected c4a38c50/, "the built-in checksum rejects the tiny archive, naming the object");
});
