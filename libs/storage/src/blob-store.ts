import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

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

/** Blobs as files on a shared volume, fanned out by the first two hex pairs to keep directories small. */
export class FileBlobStore implements BlobStore {
  constructor(readonly dir: string) {}

  private path(sha: string): string {
    if (!SHA.test(sha)) throw new Error(`not a sha256: ${sha}`);
    return join(this.dir, sha.slice(0, 2), sha.slice(2, 4), sha);
  }

  async put(bytes: Uint8Array): Promise<string> {
    const sha = sha256Hex(bytes);
    const target = this.path(sha);
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

  async get(sha: string): Promise<Uint8Array | null> {
    try {
      const bytes = await readFile(this.path(sha));
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
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
export const STORAGE_ENV = { blobDir: 'BLOB_DIR', verdictRetentionSeconds: 'VERDICT_RETENTION_SECONDS' } as const;

export function blobDirFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  return env[STORAGE_ENV.blobDir] || DEFAULT_BLOB_DIR;
}
