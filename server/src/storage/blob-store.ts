/**
 * Where checkpoints and exported models go: a local directory or an S3 prefix, behind one small
 * interface. Writes are atomic in both: a reader sees a whole object or none (local files are
 * written to a temporary name, synced and renamed; an S3 PutObject appears only once complete).
 */
import { LocalDirectory } from "./local-directory.ts";
import { S3Prefix } from "./s3-prefix.ts";

export interface BlobStore {
  /** The destination as a user wrote it, for messages. */
  readonly description: string;
  put(key: string, bytes: Uint8Array): Promise<void>;
  /** The object's bytes, or undefined when there is no such key. */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Every key under the destination (not recursive into "subdirectories" for local paths). */
  list(): Promise<string[]>;
  delete(key: string): Promise<void>;
}

export interface BlobStoreOptions {
  /** Endpoint for an S3-compatible server (tests, MinIO); unset for AWS. */
  s3Endpoint?: string | undefined;
  region?: string | undefined;
}

/** Opens `uri`: `s3://bucket/prefix`, `file:///path`, or a plain path. */
export function openBlobStore(uri: string, o: BlobStoreOptions = {}): BlobStore {
  if (uri.startsWith("s3://")) {
    const rest = uri.slice("s3://".length);
    const slash = rest.indexOf("/");
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const prefix = slash < 0 ? "" : rest.slice(slash + 1).replace(/\/+$/, "");
    if (bucket === "") throw new Error(`"${uri}" names no bucket (expected s3://bucket/prefix)`);
    return new S3Prefix(bucket, prefix, o);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri) && !uri.startsWith("file://")) {
    throw new Error(`"${uri}": unsupported destination (use a local path, file:///path or s3://bucket/prefix)`);
  }
  return new LocalDirectory(uri.startsWith("file://") ? new URL(uri).pathname : uri);
}

/** Joins a base URI and a sub-path with exactly one slash. */
export function joinUri(base: string, sub: string): string {
  return `${base.replace(/\/+$/, "")}/${sub.replace(/^\/+/, "")}`;
}
