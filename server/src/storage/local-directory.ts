import { mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { BlobStore } from "./blob-store.ts";

/** A BlobStore in a local directory (created on first write). */
export class LocalDirectory implements BlobStore {
  readonly description: string;
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = resolve(dir);
    this.description = this.#dir;
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    await mkdir(this.#dir, { recursive: true });
    const final = join(this.#dir, key);
    const temp = `${final}.partial-${process.pid}`;
    const file = await open(temp, "w");
    try {
      await file.write(bytes);
      await file.sync(); // the bytes are on disk before the name says they are complete
    } finally {
      await file.close();
    }
    await rename(temp, final);
    const dir = await open(this.#dir, "r");
    try {
      await dir.sync(); // and the rename itself survives a crash
    } finally {
      await dir.close();
    }
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    try {
      return await readFile(join(this.#dir, key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  async list(): Promise<string[]> {
    try {
      return (await readdir(this.#dir, { withFileTypes: true })).filter((e) => e.isFile() && !e.name.includes(".partial-")).map((e) => e.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await rm(join(this.#dir, key), { force: true });
  }
}
