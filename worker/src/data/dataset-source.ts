/**
 * Where a dataset file comes from, and fetching one remote copy of it: over HTTP(S) with fetch, or
 * from S3 with the AWS SDK v3 (default credential chain, so an ECS task role works; region from
 * AWS_REGION; S3_ENDPOINT for an S3-compatible server such as MinIO or s3rver).
 *
 * A download streams into a file the caller names (the cache writes a temporary file and renames it
 * only once complete and verified), computing its SHA-256 on the way. Transient failures — connection
 * refused or reset, a response cut short, HTTP 408/429/5xx, S3 throttling or 5xx, no data for
 * idleTimeoutMs — are retried with exponential backoff and jitter; others (404, access denied, no such
 * bucket) fail at once. Every error is a DatasetError whose message names the source.
 */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";

/** A user-facing failure to obtain or read a dataset: its message names the source and is meant to
 *  be printed as is, without a stack trace. */
export class DatasetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DatasetError";
  }
}

/** A failure worth retrying. */
class TransientError extends Error {}

export type Location =
  | { readonly kind: "http"; readonly url: string }
  | { readonly kind: "s3"; readonly bucket: string; readonly key: string }
  | { readonly kind: "local"; readonly path: string };

/** The location as a person would write it, for messages. */
export function describeLocation(location: Location): string {
  switch (location.kind) {
    case "http":
      return location.url;
    case "s3":
      return `s3://${location.bucket}/${location.key}`;
    case "local":
      return location.path;
  }
}

/**
 * Where `fileName` is, given `base`: an http(s):// URL, an s3://bucket/key, a file:// URL or a local
 * path. `base` names a directory (URL or key prefix) holding the file under its published name, or,
 * when the dataset is a single file (`singleFile`) and base does not end in "/", the file itself
 * (whatever its name). Whether a local path is a directory is decided by the caller (`isDirectory`).
 */
export function locate(base: string, fileName: string, singleFile: boolean, isDirectory: (path: string) => boolean = () => false): Location {
  const asFile = (text: string) => singleFile && !text.endsWith("/");
  const join = (text: string) => (text.endsWith("/") ? text : `${text}/`) + fileName;
  if (/^https?:\/\//i.test(base)) {
    try {
      new URL(base);
    } catch {
      throw new DatasetError(`DATASET_URL="${base}" is not a valid URL`);
    }
    return { kind: "http", url: asFile(base) ? base : join(base) };
  }
  const s3 = /^s3:\/\/([^/]+)\/?(.*)$/i.exec(base);
  if (s3) {
    const bucket = s3[1]!;
    const key = s3[2]!;
    if (key === "" || key.endsWith("/")) return { kind: "s3", bucket, key: key + fileName };
    return { kind: "s3", bucket, key: asFile(key) ? key : `${key}/${fileName}` };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(base) && !/^file:\/\//i.test(base)) {
    throw new DatasetError(`DATASET_URL="${base}": unsupported scheme (use http://, https://, s3://, file:// or a path)`);
  }
  const path = /^file:\/\//i.test(base) ? fileURLToPath(base) : isAbsolute(base) ? base : resolve(base);
  if (!isDirectory(path) && asFile(base)) return { kind: "local", path };
  return { kind: "local", path: resolve(path, fileName) };
}

export interface DownloadOptions {
  /** Attempts per source before giving up on it. Default 5. */
  attempts?: number;
  /** First retry delay, doubled after every failure up to maxDelayMs. Defaults 1000 / 30000. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Abort an attempt that receives no data for this long. Default 60000. */
  idleTimeoutMs?: number;
  /** S3-compatible endpoint (e.g. http://127.0.0.1:4569); path-style addressing is used with it. */
  s3Endpoint?: string | undefined;
  /** Told about each retry. */
  onRetry?: (message: string) => void;
}

export interface Downloaded {
  readonly sha256: string;
  readonly bytes: number;
}

/** Downloads `location` (http or s3) into the file `dest` (created or truncated), with retries. */
export async function download(location: Location, dest: string, o: DownloadOptions = {}): Promise<Downloaded> {
  if (location.kind === "local") throw new Error("download: a local path is read in place, not downloaded");
  const attempts = o.attempts ?? 5;
  const base = o.baseDelayMs ?? 1000;
  const max = o.maxDelayMs ?? 30_000;
  const source = describeLocation(location);
  for (let attempt = 1; ; attempt++) {
    try {
      return location.kind === "http" ? await httpOnce(location.url, dest, o) : await s3Once(location, dest, o);
    } catch (err) {
      if (err instanceof DatasetError) throw err;
      const reason = err instanceof Error ? err.message : String(err);
      if (!(err instanceof TransientError) || attempt >= attempts) {
        throw new DatasetError(`${source}: download failed${attempt > 1 ? ` after ${attempt} attempts` : ""}: ${reason}`);
      }
      const delay = Math.min(max, base * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
      o.onRetry?.(`${source}: attempt ${attempt} of ${attempts} failed (${reason}); retrying in ${(delay / 1000).toFixed(1)} s`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** Aborts when no data has arrived for `ms`; `touch()` after each chunk. */
function idleTimer(ms: number) {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const touch = () => {
    clearTimeout(timer);
    timer = setTimeout(() => controller.abort(new TransientError(`no data for ${ms / 1000} s`)), ms);
  };
  touch();
  return { signal: controller.signal, touch, stop: () => clearTimeout(timer) };
}

/** Writes `body` to `dest` while hashing it; checks the length against `expected` if known. */
async function save(body: AsyncIterable<Uint8Array>, dest: string, expected: number | undefined, touch: () => void): Promise<Downloaded> {
  const hash = createHash("sha256");
  let bytes = 0;
  const file = await open(dest, "w");
  try {
    for await (const chunk of body) {
      touch();
      hash.update(chunk);
      bytes += chunk.length;
      await file.write(chunk);
    }
  } finally {
    await file.close();
  }
  if (expected !== undefined && bytes !== expected) {
    throw new TransientError(`the response ended after ${bytes} of ${expected} bytes`);
  }
  return { sha256: hash.digest("hex"), bytes };
}

/** A network failure as a short reason ("ECONNREFUSED", "other side closed", ...). */
function networkReason(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  if (cause instanceof Error) {
    const code = (cause as { code?: string }).code;
    return code && !cause.message.includes(code) ? `${code}: ${cause.message}` : cause.message;
  }
  return err.message;
}

async function httpOnce(url: string, dest: string, o: DownloadOptions): Promise<Downloaded> {
  const idle = idleTimer(o.idleTimeoutMs ?? 60_000);
  try {
    let response: Response;
    try {
      // identity: the checksum is of the file as published, not of a re-encoding.
      response = await fetch(url, { signal: idle.signal, redirect: "follow", headers: { "accept-encoding": "identity" } });
    } catch (err) {
      throw idle.signal.aborted ? idle.signal.reason : new TransientError(networkReason(err));
    }
    if (!response.ok || response.body === null) {
      await response.body?.cancel();
      const status = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
      if (response.status === 408 || response.status === 429 || response.status >= 500) throw new TransientError(status);
      throw new DatasetError(`${url}: ${status}`);
    }
    const length = response.headers.get("content-length");
    const encoded = (response.headers.get("content-encoding") ?? "identity") !== "identity";
    const expected = length !== null && !encoded ? Number(length) : undefined;
    try {
      return await save(response.body, dest, expected, idle.touch);
    } catch (err) {
      if (err instanceof TransientError || err instanceof DatasetError) throw err;
      if (idle.signal.aborted) throw idle.signal.reason;
      if (isFileSystemError(err)) throw err;
      throw new TransientError(`the connection failed mid-download (${networkReason(err)})`);
    }
  } finally {
    idle.stop();
  }
}

function isFileSystemError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && ["ENOSPC", "EACCES", "EROFS", "EDQUOT", "ENOENT", "EISDIR"].includes(code);
}

/** S3 errors that no retry can fix. */
const S3_PERMANENT = new Set(["NoSuchKey", "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NotFound", "InvalidBucketName", "CredentialsProviderError"]);

async function s3Once(location: { bucket: string; key: string }, dest: string, o: DownloadOptions): Promise<Downloaded> {
  const source = `s3://${location.bucket}/${location.key}`;
  const client = new S3Client({
    region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? "us-east-1",
    followRegionRedirects: true,
    ...(o.s3Endpoint ? { endpoint: o.s3Endpoint, forcePathStyle: true } : {}),
  });
  const idle = idleTimer(o.idleTimeoutMs ?? 60_000);
  try {
    let body: Readable;
    let expected: number | undefined;
    try {
      const out = await client.send(new GetObjectCommand({ Bucket: location.bucket, Key: location.key }), { abortSignal: idle.signal });
      if (!(out.Body instanceof Readable)) throw new TransientError("the response has no body");
      body = out.Body;
      expected = out.ContentLength;
    } catch (err) {
      if (err instanceof TransientError) throw err;
      if (idle.signal.aborted) throw idle.signal.reason;
      const name = (err as { name?: string }).name ?? "Error";
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      const message = err instanceof Error ? err.message : String(err);
      const reason = `${name}${status ? ` (HTTP ${status})` : ""}: ${message}`;
      const clientError = status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429;
      if (S3_PERMANENT.has(name) || clientError) throw new DatasetError(`${source}: ${reason}`);
      throw new TransientError(reason);
    }
    try {
      return await save(body, dest, expected, idle.touch);
    } catch (err) {
      if (err instanceof TransientError) throw err;
      if (idle.signal.aborted) throw idle.signal.reason;
      if (isFileSystemError(err)) throw err;
      throw new TransientError(`the connection failed mid-download (${networkReason(err)})`);
    }
  } finally {
    idle.stop();
    client.destroy();
  }
}
