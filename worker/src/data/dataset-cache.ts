/**
 * The on-disk cache of downloaded dataset files, and obtaining a verified local copy of one file.
 *
 * Layout under the cache directory (DATA_DIR/<dataset>/):
 *   <file>                         verified: any source yields the same content
 *   unverified-<hash>/<file>       downloaded with verification turned off, per source URL
 *   <file>.lock                    held while one process downloads it (others on the machine wait)
 *   <file>.part-<pid>-<random>     a download in progress; renamed to <file> only when complete and
 *                                  verified, deleted on failure: a half-written file is never used
 *
 * A file verifies when its SHA-256 is the published file's, or when the SHA-256 of its decompressed
 * content is the published content's: what every copy of a dataset shares however it was compressed
 * (Debian's dataset-fashion-mnist re-gzipped the files; a mirror may too; a directory may hold them
 * uncompressed). A cached file is re-hashed on every use (about 0.5 s for CIFAR's 170 MB), so a
 * corrupted cache is noticed, deleted and downloaded again. Local sources are read in place
 * (verified, not copied); a local directory may hold a `.gz` file's content uncompressed, under its
 * name without `.gz`.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, statSync } from "node:fs";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { mkdir, open, readFile, rename, rm, stat, unlink } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { DatasetError, describeLocation, download, type DownloadOptions, type Location } from "./dataset-source.ts";

export interface WantedFile {
  /** Published file name. */
  readonly name: string;
  /** Expected SHA-256 (lower-case hex), or undefined to skip verification. */
  readonly sha256: string | undefined;
  /** Expected SHA-256 of the decompressed content (of a gzip file; of the file itself otherwise), if known. */
  readonly contentSha256?: string | undefined;
}

export interface ObtainOptions extends DownloadOptions {
  /** Directory for this dataset's cached files. */
  readonly cacheDir: string;
  /** How long to wait for another process's download of the same file. Default 1 hour. */
  readonly lockWaitMs?: number;
  readonly log?: (message: string) => void;
}

/** SHA-256 of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
export { isDirectory };

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** SHA-256 of a file's content: of what it decompresses to if it is gzip, of its bytes otherwise. */
export async function contentSha256(path: string, what = path): Promise<string> {
  const head = Buffer.alloc(2);
  const handle = await open(path, "r");
  try {
    await handle.read(head, 0, 2, 0);
  } finally {
    await handle.close();
  }
  if (head[0] !== 0x1f || head[1] !== 0x8b) return sha256File(path);
  const hash = createHash("sha256");
  try {
    await pipeline(createReadStream(path), createGunzip(), async (chunks: AsyncIterable<Buffer>) => {
      for await (const chunk of chunks) hash.update(chunk);
    });
  } catch (err) {
    throw new DatasetError(`${what}: cannot decompress (${(err as Error).message})`);
  }
  return hash.digest("hex");
}

/**
 * Why `path` does not verify as `file`, or undefined when it does: its SHA-256 is the published
 * file's (`fileSha256`, if already computed), or its content's is the published content's.
 */
async function verification(path: string, file: WantedFile, what: string, fileSha256?: string): Promise<string | undefined> {
  if (file.sha256 === undefined) return undefined;
  const actual = fileSha256 ?? (await sha256File(path));
  if (actual === file.sha256) return undefined;
  if (file.contentSha256 === undefined) return mismatch(what, file.sha256, actual);
  const content = await contentSha256(path, what);
  if (content === file.contentSha256) return undefined;
  return (
    `${what}: SHA-256 mismatch: neither the file (${actual}; expected ${file.sha256}) nor its decompressed content ` +
    `(${content}; expected ${file.contentSha256}) is the published one (a different or corrupted file; ` +
    `set DATASET_SHA256 to the right checksum, or to "skip" to accept it unverified)`
  );
}

const mismatch = (source: string, expected: string, actual: string) =>
  `${source}: SHA-256 mismatch: expected ${expected}, got ${actual} (a different or corrupted file; ` +
  `set DATASET_SHA256 to the right checksum, or to "skip" to accept it unverified)`;

/**
 * A local path holding `file` with the expected checksum: the local source itself, a cached copy, or
 * a fresh download from the first of `sources` that works. Throws DatasetError naming every source
 * tried and why it failed.
 */
export async function obtainFile(file: WantedFile, sources: readonly Location[], o: ObtainOptions): Promise<string> {
  const log = o.log ?? (() => {});
  const [first] = sources;
  if (first === undefined) throw new DatasetError(`${file.name}: no source to obtain it from`);

  if (first.kind === "local") {
    let path = first.path;
    // A directory of decompressed files: "x-ubyte" for the published "x-ubyte.gz".
    if (!(await exists(path)) && path.endsWith(".gz") && (await exists(path.slice(0, -3)))) path = path.slice(0, -3);
    if (!(await exists(path))) throw new DatasetError(`${first.path}: no such file`);
    const failed = await verification(path, file, path);
    if (failed !== undefined) throw new DatasetError(failed);
    return path;
  }

  const dir = file.sha256 !== undefined ? o.cacheDir : join(o.cacheDir, `unverified-${shortHash(describeLocation(first))}`);
  const final = join(dir, file.name);
  await mkdir(dir, { recursive: true });

  const cached = async (): Promise<boolean> => {
    if (!(await exists(final))) return false;
    const failed = await verification(final, file, `cached ${final}`).catch((err: Error) => err.message);
    if (failed === undefined) return true;
    log(`${failed}; deleting it and downloading again`);
    await rm(final, { force: true });
    return false;
  };
  if (await cached()) {
    log(`using cached ${final}`);
    return final;
  }

  const release = await acquireLock(`${final}.lock`, o.lockWaitMs ?? 3_600_000, log);
  try {
    // Another process may have completed the download while we waited for the lock.
    if (await cached()) {
      log(`using ${final}, downloaded by another process`);
      return final;
    }
    const failures: string[] = [];
    for (const source of sources) {
      const name = describeLocation(source);
      const temp = `${final}.part-${process.pid}-${randomBytes(4).toString("hex")}`;
      try {
        log(`downloading ${name}`);
        const started = Date.now();
        const got = await download(source, temp, o);
        const failed = await verification(temp, file, name, got.sha256);
        if (failed !== undefined) throw new DatasetError(failed);
        await rename(temp, final);
        log(`downloaded ${name} (${(got.bytes / 1e6).toFixed(1)} MB in ${((Date.now() - started) / 1000).toFixed(1)} s${file.sha256 ? ", SHA-256 verified" : ", NOT verified"})`);
        return final;
      } catch (err) {
        await rm(temp, { force: true });
        if (!(err instanceof DatasetError)) throw err;
        failures.push(err.message);
        if (sources.length > 1) log(`${err.message}; trying the next source`);
      }
    }
    throw new DatasetError(failures.length === 1 ? failures[0]! : `could not obtain ${file.name} from any source:\n  ${failures.join("\n  ")}`);
  } finally {
    await release();
  }
}

function shortHash(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 12);
}

/**
 * An exclusive lock file (created with O_EXCL) holding "<hostname> <pid>". While another live process
 * on this machine holds it, waits; a lock left by a dead process is taken over. Returns the release.
 */
async function acquireLock(path: string, waitMs: number, log: (m: string) => void): Promise<() => Promise<void>> {
  const started = Date.now();
  let told = false;
  await mkdir(dirname(path), { recursive: true });
  for (;;) {
    try {
      const handle = await open(path, "wx");
      await handle.writeFile(`${hostname()} ${process.pid}\n`);
      await handle.close();
      return () => unlink(path).catch(() => {});
    } catch (err) {
      if ((err as { code?: string }).code !== "EEXIST") throw err;
    }
    const owner = (await readFile(path, "utf8").catch(() => "")).trim().split(" ");
    const [host, pidText] = owner;
    const pid = Number(pidText);
    if (host === hostname() && Number.isInteger(pid) && !alive(pid)) {
      log(`removing the stale lock ${path} of process ${pid}, which is gone`);
      await rm(path, { force: true });
      continue;
    }
    if (Date.now() - started > waitMs) {
      throw new DatasetError(`${path}: still locked by ${owner.join(" ") || "another process"} after ${Math.round(waitMs / 1000)} s; delete it if no download is running`);
    }
    if (!told) {
      log(`waiting for process ${owner.join(" ")} to finish downloading ${path.replace(/\.lock$/, "")}`);
      told = true;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === "EPERM";
  }
}
