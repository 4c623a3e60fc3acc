/**
 * Where checkpoints and exported models go: a local directory or an S3 prefix, behind one small
 * interface (open-blob-store.ts picks the implementation for a URI). Writes are atomic in both: a
 * reader sees a whole object or none (local files are written to a temporary name, synced and
 * renamed; an S3 PutObject appears only once complete).
 */
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
