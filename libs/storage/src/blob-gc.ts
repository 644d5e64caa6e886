import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { intakeKeys } from '@libs/queue';
import { readSetting } from '@libs/settings';

/** How long a collector holds a blob's deletion lock at most (uploads of the same bytes wait meanwhile). */
export const BLOB_LOCK_MS = 5000;
/** Blobs claimed per collector round trip. */
export const BLOB_GC_BATCH = 200;
/** Env: seconds between collection passes in the intake (0 disables); fractions allowed. */
export const BLOB_GC_ENV = { intervalSeconds: 'BLOB_GC_INTERVAL_SECONDS' } as const;
export const DEFAULT_BLOB_GC_INTERVAL_SECONDS = 300;

const NOW_MS = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

// An upload's reference: unless a collector is deleting this blob (then the uploader waits), its expiry becomes at
// least now + retention. KEYS[1] expiry zset, KEYS[2] lock; ARGV[1] sha, ARGV[2] retention s.
const REGISTER = `
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
${NOW_MS}
redis.call('ZADD', KEYS[1], 'GT', now + tonumber(ARGV[2]) * 1000, ARGV[1])
return 1`;

// Claims up to ARGV[1] blobs whose last reference expired: each gets a deletion lock (ARGV[3] token, ARGV[4] ms)
// and leaves the zset in the same step, so a new reference either came first (the blob is not due) or waits.
const CLAIM = `
${NOW_MS}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, sha in ipairs(due) do
  redis.call('SET', ARGV[2] .. sha, ARGV[3], 'PX', tonumber(ARGV[4]))
  redis.call('ZREM', KEYS[1], sha)
end
return due`;

// Releases a deletion lock if this collector still holds it. 1: held until now; 0: it expired meanwhile.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0`;

// A blob whose deletion was abandoned (lock lost) is due again now unless a newer reference holds it.
const REQUEUE = `
${NOW_MS}
redis.call('ZADD', KEYS[1], 'GT', now, ARGV[1])
return 1`;

/**
 * References from verdicts to blobs, for collection: a zset of sha256 -> the latest expiry (ms, Redis time) of any
 * verdict referencing the blob. Verdict creation and every verdict update push it (ZADD GT, in the verdict
 * scripts); an upload registers first (now + retention) and only then writes the file.
 */
export class BlobRefs {
  private readonly keys: ReturnType<typeof intakeKeys>;

  constructor(
    private readonly redis: Redis,
    prefix: string,
    readonly retentionSeconds: number,
  ) {
    this.keys = intakeKeys(prefix);
    redis.defineCommand('blobRegister', { numberOfKeys: 2, lua: REGISTER });
    redis.defineCommand('blobClaim', { numberOfKeys: 1, lua: CLAIM });
    redis.defineCommand('blobRelease', { numberOfKeys: 1, lua: RELEASE });
    redis.defineCommand('blobRequeue', { numberOfKeys: 1, lua: REQUEUE });
  }

  private get cmd(): Record<string, (...args: unknown[]) => Promise<unknown>> {
    return this.redis as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  }

  /** Registers a reference before the bytes are written; waits while a collector deletes the same blob. */
  async register(sha: string): Promise<void> {
    const deadline = Date.now() + BLOB_LOCK_MS + 1000;
    for (;;) {
      if ((await this.cmd.blobRegister(this.keys.blobExpiry, this.keys.blobLock(sha), sha, this.retentionSeconds)) === 1) return;
      // The lock expires after BLOB_LOCK_MS at most, so this ends.
      if (Date.now() > deadline) throw new Error(`blob ${sha} stays locked for deletion`);
      await sleep(20);
    }
  }

  /** Claims due blobs with deletion locks held under `token`. */
  async claim(token: string, limit = BLOB_GC_BATCH, lockMs = BLOB_LOCK_MS): Promise<string[]> {
    return (await this.cmd.blobClaim(this.keys.blobExpiry, limit, this.keys.blobLock(''), token, lockMs)) as string[];
  }

  async release(sha: string, token: string): Promise<boolean> {
    return (await this.cmd.blobRelease(this.keys.blobLock(sha), token)) === 1;
  }

  async requeue(sha: string): Promise<void> {
    await this.cmd.blobRequeue(this.keys.blobExpiry, sha);
  }

  /**
   * Registers blobs that have no reference at all (stored before collection existed, or by a store without refs)
   * for one retention period from now, so the collector deletes them then; referenced blobs are left as they are.
   * Returns how many were registered.
   */
  async backfill(shas: AsyncIterable<string>): Promise<number> {
    let registered = 0;
    for await (const sha of shas) {
      if ((await this.expiry(sha)) !== null) continue;
      await this.register(sha);
      registered++;
    }
    return registered;
  }

  /** The blob's expiry (ms, Redis time), or null when nothing references it. */
  async expiry(sha: string): Promise<number | null> {
    const score = await this.redis.zscore(this.keys.blobExpiry, sha);
    return score === null ? null : Number(score);
  }
}

/** What the collector needs of a blob store. */
export interface CollectableBlobStore {
  /**
   * Deletes a claimed blob's file. `release` gives the deletion lock back and says whether it was held throughout;
   * when it was not, a concurrent upload may rely on the file, and the store puts it back.
   */
  removeClaimed(sha: string, release: () => Promise<boolean>): Promise<'deleted' | 'missing' | 'restored'>;
}

/**
 * Deletes blobs once the last verdict referencing them expired. Runs in the intake (it has the volume read-write):
 * every BLOB_GC_INTERVAL_SECONDS, in every replica; claims are atomic, so replicas never delete the same blob twice.
 */
export class BlobCollector {
  private timer?: NodeJS.Timeout;
  private running?: Promise<unknown>;

  constructor(
    readonly refs: BlobRefs,
    private readonly store: CollectableBlobStore,
    private readonly options: { batch?: number; lockMs?: number; onError?: (err: unknown) => void } = {},
  ) {}

  /** One pass: claims due blobs and deletes them until none is due. */
  async collectOnce(): Promise<{ deleted: number; restored: number }> {
    let deleted = 0;
    let restored = 0;
    const batch = this.options.batch ?? BLOB_GC_BATCH;
    for (;;) {
      const token = randomBytes(12).toString('hex');
      const claimed = await this.refs.claim(token, batch, this.options.lockMs ?? BLOB_LOCK_MS);
      for (const sha of claimed) {
        const outcome = await this.store.removeClaimed(sha, () => this.refs.release(sha, token));
        if (outcome === 'deleted') deleted++;
        if (outcome === 'restored') {
          restored++;
          await this.refs.requeue(sha);
        }
      }
      if (claimed.length < batch) return { deleted, restored };
    }
  }

  start(intervalMs: number): void {
    if (intervalMs <= 0 || this.timer) return;
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = this.collectOnce()
        .catch((err) => this.options.onError?.(err))
        .finally(() => (this.running = undefined));
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}

export function blobGcIntervalMs(env: NodeJS.ProcessEnv = process.env): number {
  return (readSetting<number>(env, BLOB_GC_ENV.intervalSeconds) ?? DEFAULT_BLOB_GC_INTERVAL_SECONDS) * 1000;
}
