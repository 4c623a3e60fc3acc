/**
 * A destination URI to its BlobStore: `s3://bucket/prefix`, `file:///path`, or a plain path.
 */
import type { BlobStore, BlobStoreOptions } from "./blob-store.ts";
import { LocalDirectory } from "./local-directory.ts";
import { S3Prefix } from "./s3-prefix.ts";

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
