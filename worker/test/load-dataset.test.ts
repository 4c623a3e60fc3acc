import t, { type Test } from "tap";
import { createServer, type Server } from "node:http";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { createLogger } from "@distributed-ps/common/log.ts";
import { DATASETS } from "../src/data/catalog.ts";
import { checkSliceHoldsABatch, DatasetError, loadDataset, type DatasetConfig } from "../src/data/load-dataset.ts";
import { sliceForPart } from "../src/data/partition.ts";
import { pixelValue, sha256, tinyCifarArchive, tinyIdxFiles } from "./fixtures/tiny-datasets.ts";
import { runNode } from "../../test/helpers/processes.ts";

const lines: string[] = [];

/** Asserts that `promise` rejects with a DatasetError (printed as one line, no stack) whose message matches `pattern`. */
async function failsWith(t: Test, promise: Promise<unknown>, pattern: RegExp, what: string): Promise<void> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  t.type(err, DatasetError, `${what}: a DatasetError`);
  t.match((err as Error | undefined)?.message, pattern, `${what}: ${(err as Error | undefined)?.message}`);
}
const log = createLogger("test", "debug", (l) => lines.push(l));
/** Fast retries so that the failure cases take milliseconds. */
const fast = { attempts: 3, baseDelayMs: 5, maxDelayMs: 20 };

type Behaviour = "ok" | "truncate-once" | "truncate-always" | "error-once";

/** A static file server on loopback that can misbehave per path, and counts requests. */
async function fileServer(t: Test, files: Map<string, Buffer>) {
  const behaviour = new Map<string, Behaviour>();
  const requests: string[] = [];
  const failedOnce = new Set<string>();
  const server: Server = createServer((req, res) => {
    const path = req.url ?? "/";
    requests.push(path);
    const body = files.get(path);
    if (body === undefined) {
      res.writeHead(404, "Not Found").end();
      return;
    }
    const b = behaviour.get(path) ?? "ok";
    const failNow = b === "truncate-always" || ((b === "truncate-once" || b === "error-once") && !failedOnce.has(path));
    if (failNow && b === "error-once") {
      failedOnce.add(path);
      res.writeHead(503, "Service Unavailable").end();
      return;
    }
    res.writeHead(200, { "content-length": body.length, "content-type": "application/octet-stream" });
    if (failNow) {
      failedOnce.add(path);
      // Half the promised bytes, then the connection drops.
      res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.destroy());
      return;
    }
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const { port } = server.address() as { port: number };
  return { base: `http://127.0.0.1:${port}`, behaviour, requests };
}

const idx = tinyIdxFiles(60, 20);
const idxSums = [...idx].map(([name, bytes]) => `${name}=${sha256(bytes)}`).join(",");
const served = (prefix: string, files: Map<string, Buffer>) => new Map([...files].map(([name, bytes]) => [`${prefix}/${name}`, bytes]));

const mnistConfig = (over: Partial<DatasetConfig>): DatasetConfig => ({ DATASET: "mnist", SEED: 1, DATA_DIR: "", DATASET_SHA256: idxSums, ...over });

/** A fresh empty directory for this test (freshDir(t) returns the same one on every call). */
const dirCounts = new WeakMap<Test, number>();
function freshDir(t: Test): string {
  const count = (dirCounts.get(t) ?? 0) + 1;
  dirCounts.set(t, count);
  const root = count === 1 ? t.testdir() : t.testdirName; // the first call empties it
  const dir = join(root, `d${count}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Every file under `dir`, recursively, relative. */
function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
}

t.test("MNIST over HTTP: downloaded, verified, parsed, normalised; the second load uses the cache", async (t) => {
  const http = await fileServer(t, served("/mnist", idx));
  const dataDir = freshDir(t);
  const config = mnistConfig({ DATASET_URL: `${http.base}/mnist/`, DATA_DIR: dataDir });
  const data = await loadDataset(config, log, fast);
  t.same(data.inputShape, [28, 28, 1], "input shape");
  t.equal(data.classes, 10, "classes");
  t.equal(data.train.count, 60, "60 training images");
  t.equal(data.test.count, 20, "20 test images");
  t.same(Array.from(data.train.y.subarray(0, 12)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1], "labels in file order");
  const expected = (i: number, row: number) => (pixelValue(i, 0, row) / 255 - 0.1307) / 0.3081;
  t.ok(Math.abs(data.train.x[5 * 784 + 3 * 28 + 7]! - expected(5, 3)) < 1e-5, "pixel (image 5, row 3) normalised with MNIST's mean and std");
  t.notOk(data.augmentation, "MNIST has no augmentation");
  t.equal(http.requests.length, 4, "four files fetched");
  t.same(listFiles(join(dataDir, "mnist")).sort(), [...idx.keys()].sort(), "the cache holds exactly the four files (no temporary or lock files)");

  const again = await loadDataset(config, log, fast);
  t.equal(http.requests.length, 4, "second load: no request reached the server");
  t.same(again.train.x, data.train.x, "same data from the cache");
});

t.test("a truncated response is retried; one that never completes fails naming the source, leaving nothing", async (t) => {
  const http = await fileServer(t, served("/m", idx));
  const dataDir = freshDir(t);
  http.behaviour.set("/m/train-images-idx3-ubyte.gz", "truncate-once");
  http.behaviour.set("/m/t10k-labels-idx1-ubyte.gz", "error-once");
  const data = await loadDataset(mnistConfig({ DATASET_URL: `${http.base}/m`, DATA_DIR: dataDir }), log, fast);
  t.equal(data.train.count, 60, "loaded after retrying");
  t.equal(http.requests.filter((p) => p === "/m/train-images-idx3-ubyte.gz").length, 2, "the truncated file was requested twice");
  t.equal(http.requests.filter((p) => p === "/m/t10k-labels-idx1-ubyte.gz").length, 2, "the 503 was retried");
  t.ok(lines.some((l) => /train-images-idx3-ubyte\.gz: attempt 1 of 3 failed \(.*(ended after|connection failed)/.test(l)), "the retry was logged with its reason");

  const broken = await fileServer(t, served("/m", idx));
  broken.behaviour.set("/m/train-images-idx3-ubyte.gz", "truncate-always");
  const dir2 = freshDir(t);
  const error = await loadDataset(mnistConfig({ DATASET_URL: `${broken.base}/m/`, DATA_DIR: dir2 }), log, fast).catch((e: unknown) => e);
  t.type(error, DatasetError, "a DatasetError");
  t.match((error as Error).message, new RegExp(`^${broken.base}/m/train-images-idx3-ubyte\\.gz: download failed after 3 attempts: `), "names the source and the attempts");
  t.same(listFiles(join(dir2, "mnist")).filter((f) => f.startsWith("train-images")), [], "no partial or final train-images file left in the cache");
});

t.test("a checksum mismatch is a clear error naming the source, and nothing is cached", async (t) => {
  const http = await fileServer(t, served("/m", idx));
  const dataDir = freshDir(t);
  // The tiny files are not the published ones: the built-in checksums must reject them.
  const error = await loadDataset(mnistConfig({ DATASET_URL: `${http.base}/m/`, DATA_DIR: dataDir, DATASET_SHA256: undefined }), log, fast).catch((e: unknown) => e);
  t.type(error, DatasetError);
  const file = DATASETS.mnist.files[0]!;
  t.match(
    (error as Error).message,
    `${http.base}/m/train-images-idx3-ubyte.gz: SHA-256 mismatch: neither the file (${sha256(idx.get("train-images-idx3-ubyte.gz")!)}; expected ${file.sha256}) ` +
      `nor its decompressed content (${sha256(gunzipSync(idx.get("train-images-idx3-ubyte.gz")!))}; expected ${file.contentSha256}) is the published one`,
    "names the source, and the expected and actual checksums of the file and of its content",
  );
  t.same(listFiles(join(dataDir, "mnist")), [], "nothing left in the cache");
  t.equal(http.requests.length, 1, "not retried: the same bytes would come back");

  const skipped = await loadDataset(mnistConfig({ DATASET_URL: `${http.base}/m/`, DATA_DIR: dataDir, DATASET_SHA256: "skip" }), log, fast);
  t.equal(skipped.train.count, 60, "DATASET_SHA256=skip accepts them, explicitly");
  t.ok(lines.some((l) => /WARN .*DATASET_SHA256=skip: the mnist files are NOT verified/.test(l)), "with a warning");
  t.ok(listFiles(join(dataDir, "mnist")).every((f) => f.startsWith("unverified-")), "unverified files are cached apart from verified ones");

  await t.rejects(loadDataset(mnistConfig({ DATASET_URL: `${http.base}/m/`, DATA_DIR: dataDir, DATASET_SHA256: "abc" }), log, fast),
    /DATASET_SHA256="abc": mnist has 4 files/, "a malformed override is refused");
});

t.test("a corrupted cache file is detected, deleted and downloaded again", async (t) => {
  const http = await fileServer(t, served("/m", idx));
  const dataDir = freshDir(t);
  const config = mnistConfig({ DATASET_URL: `${http.base}/m/`, DATA_DIR: dataDir });
  await loadDataset(config, log, fast);
  const cached = join(dataDir, "mnist", "t10k-images-idx3-ubyte.gz");
  writeFileSync(cached, Buffer.from("garbage"));
  await loadDataset(config, log, fast);
  t.equal(http.requests.length, 5, "only the corrupted file was fetched again");
  t.same(readFileSync(cached), idx.get("t10k-images-idx3-ubyte.gz"), "and it is correct now");
});

t.test("unreachable and missing sources fail with the source in the message", async (t) => {
  const http = await fileServer(t, served("/m", idx));
  await t.rejects(loadDataset(mnistConfig({ DATASET_URL: `${http.base}/nothing-here/`, DATA_DIR: freshDir(t) }), log, fast),
    new RegExp(`^${http.base}/nothing-here/train-images-idx3-ubyte\\.gz: HTTP 404 Not Found$`), "404 is not retried and says so");
  // A port with nothing listening: connection refused, retried, then a clear error.
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
  const { port } = closed.address() as { port: number };
  await new Promise<void>((r) => closed.close(() => r()));
  await t.rejects(loadDataset(mnistConfig({ DATASET_URL: `http://127.0.0.1:${port}/x/`, DATA_DIR: freshDir(t) }), log, fast),
    new RegExp(`^http://127\\.0\\.0\\.1:${port}/x/train-images-idx3-ubyte\\.gz: download failed after 3 attempts: .*ECONNREFUSED`), "connection refused");
  await t.rejects(loadDataset(mnistConfig({ DATASET_URL: "/definitely/not/here/", DATA_DIR: freshDir(t) }), log, fast),
    /^\/definitely\/not\/here\/train-images-idx3-ubyte\.gz: no such file$/, "a missing local path");
  await t.rejects(loadDataset(mnistConfig({ DATASET_URL: "ftp://example/x", DATA_DIR: freshDir(t) }), log, fast), /unsupported scheme/);
});

t.test("MNIST from a local directory, read in place and verified", async (t) => {
  const dir = freshDir(t);
  for (const [name, bytes] of idx) writeFileSync(join(dir, name), bytes);
  const dataDir = freshDir(t);
  const data = await loadDataset(mnistConfig({ DATASET_URL: dir, DATA_DIR: dataDir }), log, fast);
  t.equal(data.train.count, 60);
  t.same(listFiles(dataDir), [], "nothing copied into the cache");
  writeFileSync(join(dir, "train-labels-idx1-ubyte.gz"), Buffer.from("changed"));
  await t.rejects(loadDataset(mnistConfig({ DATASET_URL: `file://${dir}`, DATA_DIR: dataDir }), log, fast),
    new RegExp(`^${dir}/train-labels-idx1-ubyte\\.gz: SHA-256 mismatch`), "a local file is verified too (file:// URL)");
});

t.test("CIFAR-10 from a local archive: order, channel-last layout, augmentation declared", async (t) => {
  const dir = freshDir(t);
  const archive = await tinyCifarArchive(dir, "cifar10", 4, 6);
  const data = await loadDataset({ DATASET: "cifar10", SEED: 3, DATA_DIR: freshDir(t), DATASET_URL: archive, DATASET_SHA256: sha256(readFileSync(archive)) }, log, fast);
  t.same(data.inputShape, [32, 32, 3]);
  t.equal(data.train.count, 20, "5 batches of 4");
  t.equal(data.test.count, 6);
  t.same(Array.from(data.train.y), Array.from({ length: 20 }, (_, i) => i % 10), "training batches concatenated in order 1..5");
  const norm = (i: number, c: number, row: number) => (pixelValue(i, c, row) / 255 - DATASETS.cifar10.mean[c]!) / DATASETS.cifar10.std[c]!;
  const at = (i: number, row: number, col: number, c: number) => data.train.x[i * 3072 + (row * 32 + col) * 3 + c]!;
  t.ok([0, 1, 2].every((c) => Math.abs(at(13, 9, 4, c) - norm(13, c, 9)) < 1e-5), "image 13, row 9: R, G, B from the three planes, normalised per channel");
  t.same(data.augmentation, { padding: 4, horizontalFlip: true, seed: data.augmentation?.seed }, "crop + flip for training");
});

t.test("CIFAR-100 over HTTP (the archive URL itself): fine labels by default, coarse on request", async (t) => {
  const dir = freshDir(t);
  const archive = await tinyCifarArchive(dir, "cifar100", 3, 5);
  const bytes = readFileSync(archive);
  const http = await fileServer(t, new Map([["/datasets/my-cifar100.tgz", bytes]]));
  const base = { DATASET: "cifar100" as const, SEED: 1, DATA_DIR: freshDir(t), DATASET_URL: `${http.base}/datasets/my-cifar100.tgz`, DATASET_SHA256: sha256(bytes) };
  const fine = await loadDataset(base, log, fast);
  t.equal(fine.classes, 100);
  t.same(Array.from(fine.train.y.subarray(0, 4)), [0, 1, 2, 3], "fine labels");
  t.equal(fine.train.count, 15);
  const coarse = await loadDataset({ ...base, CIFAR100_LABELS: "coarse" }, log, fast);
  t.equal(coarse.classes, 20, "20 superclasses");
  t.equal(http.requests.length, 1, "the cached archive served the second load");
  t.match(coarse.description, /cifar100 \(coarse labels\)/);
});

t.test("a truncated or wrong archive is a clear error", async (t) => {
  const dir = freshDir(t);
  const archive = await tinyCifarArchive(dir, "cifar10", 2, 2);
  const cut = join(dir, "cut.tar.gz");
  const whole = readFileSync(archive);
  writeFileSync(cut, whole.subarray(0, whole.length - 20));
  await t.rejects(loadDataset({ DATASET: "cifar10", SEED: 1, DATA_DIR: freshDir(t), DATASET_URL: cut, DATASET_SHA256: "skip" }, log, fast),
    new RegExp(`^${cut}: not a readable tar.gz archive \\(zlib: unexpected end of file\\)`), "names the file and the problem");
  const c100 = await tinyCifarArchive(dir, "cifar100", 2, 2);
  await t.rejects(loadDataset({ DATASET: "cifar10", SEED: 1, DATA_DIR: freshDir(t), DATASET_URL: c100, DATASET_SHA256: "skip" }, log, fast),
    /the archive has no data_batch_1\.bin, .*test_batch\.bin \(is it the CIFAR-10 binary version\?\)/, "a CIFAR-100 archive given as CIFAR-10");
});

t.test("a CIFAR member too short or too long, or with a label out of range, is named with what is wrong", async (t) => {
  const load = (archive: string) => loadDataset({ DATASET: "cifar10", SEED: 1, DATA_DIR: freshDir(t), DATASET_URL: archive, DATASET_SHA256: "skip" }, log, fast);
  // One member a byte short and the next a byte long: together a whole number of records.
  const shortLong = await tinyCifarArchive(freshDir(t), "cifar10", 2, 2, (member, bytes) =>
    member === "data_batch_2.bin" ? bytes.subarray(0, bytes.length - 1) : member === "data_batch_3.bin" ? Buffer.concat([bytes, Buffer.of(7)]) : bytes,
  );
  await failsWith(t, load(shortLong), /\(data_batch_2\.bin\): 6145 bytes is not a whole number of 3073-byte records$/, "the short member is named");
  const badLabel = await tinyCifarArchive(freshDir(t), "cifar10", 2, 2, (member, bytes) => {
    if (member !== "test_batch.bin") return bytes;
    const out = Buffer.from(bytes);
    out[3073] = 249; // the second record's label
    return out;
  });
  await failsWith(t, load(badLabel), /\(test_batch\.bin\): record 1 has label 249, outside \[0, 10\)/, "the member and the record are named");
});

t.test("IDX errors name the file and what is wrong", async (t) => {
  const write = (files: Map<string, Buffer>) => {
    const dir = freshDir(t);
    for (const [name, bytes] of files) writeFileSync(join(dir, name), bytes);
    return dir;
  };
  const load = (dir: string) => loadDataset(mnistConfig({ DATASET_URL: dir, DATA_DIR: freshDir(t), DATASET_SHA256: "skip" }), log, fast);
  const broken = (name: string, bytes: Buffer) => new Map([...idx].map(([n, b]) => [n, n === name ? bytes : b]));
  const labels = gunzipSync(idx.get("train-labels-idx1-ubyte.gz")!);
  const cases: [string, Buffer, RegExp][] = [
    ["a truncated gzip", idx.get("train-labels-idx1-ubyte.gz")!.subarray(0, 30), /train-labels-idx1-ubyte\.gz: cannot decompress/],
    ["a short IDX", gzipSync(labels.subarray(0, labels.length - 5)), /train-labels-idx1-ubyte\.gz: IDX header \[60\] needs 68 bytes, the file has 63/],
    ["a bad magic number", gzipSync(Buffer.concat([Buffer.of(1, 2), labels.subarray(2)])), /train-labels-idx1-ubyte\.gz: not an IDX file \(bad magic number\)/],
    ["wrong dimensions", idx.get("train-labels-idx1-ubyte.gz")!, /train-images-idx3-ubyte\.gz: expected images \[n, 28, 28\], got \[60\]/],
    ["a label out of range", gzipSync(Buffer.concat([labels.subarray(0, 8 + 41), Buffer.of(12), labels.subarray(8 + 42)])), /train-labels-idx1-ubyte\.gz: label 12 of example 41 is outside \[0, 10\)/],
  ];
  for (const [what, bytes, pattern] of cases) {
    const name = what === "wrong dimensions" ? "train-images-idx3-ubyte.gz" : "train-labels-idx1-ubyte.gz";
    await failsWith(t, load(write(broken(name, bytes))), pattern, what);
  }
});

t.test("a real worker process with a broken data file: one error line naming the file, exit 1, no stack", async (t) => {
  const dir = freshDir(t);
  const labels = gunzipSync(idx.get("train-labels-idx1-ubyte.gz")!);
  labels[8 + 41] = 12;
  for (const [name, bytes] of idx) writeFileSync(join(dir, name), name === "train-labels-idx1-ubyte.gz" ? gzipSync(labels) : bytes);
  const r = await runNode("worker/src/main.ts", {
    // Nothing listens on port 1: the data is loaded before any server is contacted.
    env: { DATASET: "mnist", DATASET_URL: dir, DATASET_SHA256: "skip", DATA_DIR: freshDir(t), PARAMETER_SERVER_ADDRESS: "127.0.0.1:1", CONNECT_TIMEOUT_MS: "300" },
  });
  t.equal(r.code, 1, "exit 1");
  const errors = r.output.split("\n").filter((l) => /ERROR/.test(l));
  t.equal(errors.length, 1, "one error line");
  t.match(errors[0], /train-labels-idx1-ubyte\.gz: label 12 of example 41 is outside \[0, 10\)/, "naming the file and what is wrong");
  t.notMatch(r.output, /^\s+at /m, "no stack trace");
});

t.test("a re-compressed or decompressed copy verifies by its content's checksum; other content does not", async (t) => {
  const contentSums = [...idx].map(([name, bytes]) => `${name}=${sha256(gunzipSync(bytes))}`).join(",");
  const regzipped = freshDir(t);
  for (const [name, bytes] of idx) writeFileSync(join(regzipped, name), gzipSync(gunzipSync(bytes), { level: 1 }));
  t.not(sha256(readFileSync(join(regzipped, "train-images-idx3-ubyte.gz"))), sha256(idx.get("train-images-idx3-ubyte.gz")!), "the re-compressed file differs");
  const a = await loadDataset(mnistConfig({ DATASET_URL: regzipped, DATA_DIR: freshDir(t), DATASET_SHA256: contentSums }), log, fast);
  t.equal(a.train.count, 60, "a re-gzipped copy verifies by its content");
  const plain = freshDir(t);
  for (const [name, bytes] of idx) writeFileSync(join(plain, name.replace(/\.gz$/, "")), gunzipSync(bytes));
  const b = await loadDataset(mnistConfig({ DATASET_URL: plain, DATA_DIR: freshDir(t), DATASET_SHA256: contentSums }), log, fast);
  t.same(Array.from(b.train.x.subarray(0, 1000)), Array.from(a.train.x.subarray(0, 1000)), "an uncompressed directory (names without .gz) gives the same data");
  const labels = gunzipSync(idx.get("t10k-labels-idx1-ubyte.gz")!);
  labels[20] = (labels[20]! + 1) % 10;
  writeFileSync(join(plain, "t10k-labels-idx1-ubyte"), labels);
  await t.rejects(loadDataset(mnistConfig({ DATASET_URL: plain, DATA_DIR: freshDir(t), DATASET_SHA256: contentSums }), log, fast),
    /t10k-labels-idx1-ubyte: SHA-256 mismatch: neither the file .* nor its decompressed content .* is the published one/, "changed content is refused");
});

t.test("Debian's dataset-fashion-mnist (re-gzipped by Debian) verifies against the catalog without DATASET_SHA256=skip", async (t) => {
  const data = await loadDataset({ DATASET: "fashion-mnist", SEED: 1, DATA_DIR: freshDir(t), DATASET_URL: "/usr/share/datasets/fashion-mnist/" }, log, fast);
  t.equal(data.train.count, 60_000, "60,000 training images");
  t.equal(data.test.count, 10_000, "10,000 test images");
});

t.test("slices of a real loader's training set are disjoint and cover it; subsets are seeded", async (t) => {
  const dir = freshDir(t);
  for (const [name, bytes] of idx) writeFileSync(join(dir, name), bytes);
  const data = await loadDataset(mnistConfig({ DATASET_URL: dir, DATA_DIR: freshDir(t) }), log, fast);
  const seen = new Int32Array(data.train.count);
  for (let slot = 0; slot < 4; slot++) for (const i of sliceForPart(data.train.count, slot, 4, 1)) seen[i]!++;
  t.ok(seen.every((n) => n === 1), "every training example is in exactly one of 4 slices");

  const small = await loadDataset(mnistConfig({ DATASET_URL: dir, DATA_DIR: freshDir(t), TRAIN_EXAMPLES: 25, TEST_EXAMPLES: 10 }), log, fast);
  t.equal(small.train.count, 25, "TRAIN_EXAMPLES takes a subset");
  t.equal(small.test.count, 10, "TEST_EXAMPLES too");
  const again = await loadDataset(mnistConfig({ DATASET_URL: dir, DATA_DIR: freshDir(t), TRAIN_EXAMPLES: 25, TEST_EXAMPLES: 10 }), log, fast);
  t.same(again.train.y, small.train.y, "the same subset for the same seed");
  t.match(small.description, /25 of 60 train \/ 10 of 20 test/);

  t.throws(() => checkSliceHoldsABatch(100, 8, 32), /each of the 8 workers gets 12 of the 100 training examples, fewer than one batch \(BATCH_SIZE=32\)/);
  t.doesNotThrow(() => checkSliceHoldsABatch(256, 8, 32));
});

t.test("concurrent loads of the same file download it once (lock), and a stale lock is taken over", async (t) => {
  const http = await fileServer(t, served("/m", idx));
  const dataDir = freshDir(t);
  const config = mnistConfig({ DATASET_URL: `${http.base}/m/`, DATA_DIR: dataDir });
  await Promise.all([loadDataset(config, log, fast), loadDataset(config, log, fast), loadDataset(config, log, fast)]);
  t.equal(http.requests.length, 4, "three concurrent loaders fetched each file once");

  const dir2 = freshDir(t);
  mkdirSync(join(dir2, "mnist"), { recursive: true });
  const { hostname } = await import("node:os");
  writeFileSync(join(dir2, "mnist", "train-images-idx3-ubyte.gz.lock"), `${hostname()} 999999999\n`);
  await loadDataset(mnistConfig({ DATASET_URL: `${http.base}/m/`, DATA_DIR: dir2 }), log, fast);
  t.ok(lines.some((l) => /removing the stale lock .* of process 999999999/.test(l)), "the dead process's lock was removed");
});
