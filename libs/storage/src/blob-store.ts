import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readSetting } from '@libs/settings';
import type { BlobRefs, CollectableBlobStore } from './blob-gc';

export const BLOB_STORE = Symbol('BLOB_STORE');
export const DEFAULT_BLOB_DIR = 'var/blobs';

/**
 * Content-addressed store for images: the key is the sha256 of the bytes, so the same photo uploaded by many
 * jobs is stored once and a key can never point at other bytes. An object store (S3, GCS) implements the
 * same three calls.
 */
export interface BlobStore {
  /** Stores the bytes and returns their sha256 (hex). Idempotent. */
  put(bytes: Uint8Array): Promise<string>;
  /** The bytes, or null when no blob has this key. */
  get(sha256: string): Promise<Uint8Array | null>;
  has(sha256: string): Promise<boolean>;
}

export function sha256Hex(...parts: (Uint8Array | string)[]): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest('hex');
}

const SHA = /^[0-9a-f]{64}$/;

/**
 * Blobs as files on a shared volume, fanned out by the first two hex pairs to keep directories small. With `refs`
 * (the intake), an upload registers its reference for collection before it writes, and waits while a collector
 * deletes the same bytes, so a concurrent upload never loses its file.
 */
export class FileBlobStore implements BlobStore, CollectableBlobStore {
  constructor(
    readonly dir: string,
    private readonly refs?: BlobRefs,
  ) {}

  private path(sha: string): string {
    if (!SHA.test(sha)) throw new Error(`not a sha256: ${sha}`);
    return join(this.dir, sha.slice(0, 2), sha.slice(2, 4), sha);
  }

  async put(bytes: Uint8Array): Promise<string> {
    const sha = sha256Hex(bytes);
    const target = this.path(sha);
    await this.refs?.register(sha);
    if (await this.has(sha)) return sha;
    const folder = join(this.dir, sha.slice(0, 2), sha.slice(2, 4));
    await mkdir(folder, { recursive: true });
    // Temp file + rename: readers on other pods never see a half-written image, and concurrent writers of the
    // same bytes both succeed (rename over an identical file is harmless).
    const tmp = join(folder, `.${sha}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await writeFile(tmp, bytes);
      await rename(tmp, target);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    return sha;
  }

  /** Every blob's sha256 (temporary files of writes in flight skipped); for the reference backfill. */
  async *list(): AsyncGenerator<string> {
    const entries = (dir: string) => readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const a of await entries(this.dir)) {
      if (!a.isDirectory() || !/^[0-9a-f]{2}$/.test(a.name)) continue;
      for (const b of await entries(join(this.dir, a.name))) {
        if (!b.isDirectory() || !/^[0-9a-f]{2}$/.test(b.name)) continue;
        for (const f of await entries(join(this.dir, a.name, b.name))) {
          if (f.isFile() && SHA.test(f.name) && f.name.startsWith(a.name + b.name)) yield f.name;
        }
      }
    }
  }

  async get(sha: string): Promise<Uint8Array | null> {
    try {
      const bytes = await readFile(this.path(sha));
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async removeClaimed(sha: string, release: () => Promise<boolean>): Promise<'deleted' | 'missing' | 'restored'> {
    const target = this.path(sha);
    // Out of the way first (atomic), then check the lock was held throughout: if it expired meanwhile, an upload
    // may have found the file and skipped writing it, so the bytes go back (same name, same bytes: harmless).
    const trash = `${target}.${randomBytes(6).toString('hex')}.deleting`;
    try {
      await rename(target, trash);
    } catch (err) {
      await release();
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
      throw err;
    }
    if (await release().catch(() => false)) {
      await unlink(trash);
      return 'deleted';
    }
    await rename(trash, target);
    return 'restored';
  }

  async has(sha: string): Promise<boolean> {
    try {
      await stat(this.path(sha));
      return true;
    } catch {
      return false;
    }
  }
}

/** Env variables of the storage wiring. */
export const STORAGE_ENV = {
  blobDir: 'BLOB_DIR',
  verdictRetentionSeconds: 'VERDICT_RETENTION_SECONDS',
  blobGcIntervalSeconds: 'BLOB_GC_INTERVAL_SECONDS',
} as const;

export function blobDirFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  return readSetting<string>(env, STORAGE_ENV.blobDir) ?? DEFAULT_BLOB_DIR;
}
