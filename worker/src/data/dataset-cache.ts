/**
 * The on-disk cache of downloaded dataset files, and obtaining a verified local copy of one file.
 *
 * Layout under the cache directory (DATA_DIR/<dataset>/):
 *   <file>                         verified against its SHA-256: any source yields the same bytes
 *   unverified-<hash>/<file>       downloaded with verification turned off, per source URL
 *   <file>.lock                    held while one process downloads it (others on the machine wait)
 *   <file>.part-<pid>-<random>     a download in progress; renamed to <file> only when complete and
 *                                  verified, deleted on failure: a half-written file is never used
 *
 * A cached file is re-hashed on every use (about 0.5 s for CIFAR's 170 MB), so a corrupted cache is
 * noticed, deleted and downloaded again. Local sources are read in place (verified, not copied).
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, statSync } from "node:fs";
import { mkdir, open, readFile, rename, rm, stat, unlink } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { DatasetError, describeLocation, download, type DownloadOptions, type Location } from "./dataset-source.ts";

export interface WantedFile {
  /** Published file name. */
  readonly name: string;
  /** Expected SHA-256 (lower-case hex), or undefined to skip verification. */
  readonly sha256: string | undefined;
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
    const path = first.path;
    if (!(await exists(path))) throw new DatasetError(`${path}: no such file`);
    if (file.sha256 !== undefined) {
      const actual = await sha256File(path);
      if (actual !== file.sha256) throw new DatasetError(mismatch(path, file.sha256, actual));
    }
    return path;
  }

  const dir = file.sha256 !== undefined ? o.cacheDir : join(o.cacheDir, `unverified-${shortHash(describeLocation(first))}`);
  const final = join(dir, file.name);
  await mkdir(dir, { recursive: true });

  const cached = async (): Promise<boolean> => {
    if (!(await exists(final))) return false;
    if (file.sha256 === undefined) return true;
    const actual = await sha256File(final);
    if (actual === file.sha256) return true;
    log(`cached ${final} does not match its checksum (got ${actual}); deleting it and downloading again`);
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
        if (file.sha256 !== undefined && got.sha256 !== file.sha256) throw new DatasetError(mismatch(name, file.sha256, got.sha256));
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
