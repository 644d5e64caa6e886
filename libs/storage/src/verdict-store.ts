import type { Redis } from 'ioredis';
import { TERMINAL_STATUSES, VerdictSchema, type Verdict, type VerdictStatus } from '@libs/contracts';
import { verdictKeys } from '@libs/queue';

export const VERDICT_STORE = Symbol('VERDICT_STORE');
export const DEFAULT_VERDICT_RETENTION_SECONDS = 30 * 24 * 3600;

export interface StoredVerdict {
  tenant: string;
  verdict: Verdict;
}

export interface BatchRecord {
  id: string;
  tenant: string;
  total: number;
  created_at: string;
  metadata: Record<string, unknown> | null;
  counts: Record<VerdictStatus, number>;
}

export interface IdempotencyRecord {
  kind: 'job' | 'batch';
  id: string;
  bodySha256: string;
}

// Creates a verdict unless one exists, and adds it to its batch's index and counters, atomically.
const CREATE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'rev', 1, 'status', ARGV[2], 'tenant', ARGV[3], 'json', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
  redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return 1`;

// Compare-and-set on the verdict's revision; moves the batch counter from the old status to the new one.
const CAS = `
local rev = redis.call('HGET', KEYS[1], 'rev')
if not rev then return -1 end
if rev ~= ARGV[1] then return 0 end
local old = redis.call('HGET', KEYS[1], 'status')
redis.call('HSET', KEYS[1], 'rev', tonumber(rev) + 1, 'status', ARGV[3], 'json', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if ARGV[5] == '1' and old ~= ARGV[3] then
  redis.call('HINCRBY', KEYS[2], old, -1)
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
end
return 1`;

/**
 * Verdicts in Redis under the queue prefix (one hash tag, so scripts stay in one Cluster slot), with their own
 * retention: BullMQ drops finished jobs after an hour, downstream systems poll for days. Each verdict carries
 * its tenant, so reads are filtered by owner; batches keep a sorted index for cursor pagination and counters
 * by status, updated in the same script as the verdict so counts never drift.
 */
export class VerdictStore {
  private readonly keys: ReturnType<typeof verdictKeys>;

  constructor(
    private readonly redis: Redis,
    prefix: string,
    readonly retentionSeconds = DEFAULT_VERDICT_RETENTION_SECONDS,
  ) {
    this.keys = verdictKeys(prefix);
    redis.defineCommand('verdictCreate', { numberOfKeys: 3, lua: CREATE });
    redis.defineCommand('verdictCas', { numberOfKeys: 2, lua: CAS });
  }

  /** Creates verdicts (all `queued`) and, when they form a batch, the batch record. Returns how many were new. */
  async create(verdicts: { tenant: string; verdict: Verdict }[], batch?: Omit<BatchRecord, 'counts'>): Promise<number> {
    const pipe = this.redis.pipeline();
    if (batch) {
      pipe.hset(this.keys.batch(batch.id), {
        tenant: batch.tenant,
        total: batch.total,
        created_at: batch.created_at,
        metadata: JSON.stringify(batch.metadata),
      });
      pipe.expire(this.keys.batch(batch.id), this.retentionSeconds);
    }
    verdicts.forEach(({ tenant, verdict }, index) => {
      const batchId = verdict.batch_id;
      (pipe as unknown as Record<string, (...args: unknown[]) => void>).verdictCreate(
        this.keys.verdict(verdict.id),
        batchId ? this.keys.batchItems(batchId) : this.keys.verdict(verdict.id),
        batchId ? this.keys.batchCounts(batchId) : this.keys.verdict(verdict.id),
        JSON.stringify(VerdictSchema.parse(verdict)),
        verdict.status,
        tenant,
        this.retentionSeconds,
        batchId ? String(index) : '',
        verdict.id,
      );
    });
    const results = (await pipe.exec()) ?? [];
    let created = 0;
    for (const [err, value] of results) {
      if (err) throw err;
      if (value === 1) created++;
    }
    return created;
  }

  async get(id: string): Promise<StoredVerdict | null> {
    const [tenant, json] = await this.redis.hmget(this.keys.verdict(id), 'tenant', 'json');
    if (!tenant || !json) return null;
    return { tenant, verdict: JSON.parse(json) as Verdict };
  }

  /**
   * Read-modify-write with optimistic concurrency. `change` returns the new verdict, or null to leave it as is
   * (e.g. it is already final: a retried or duplicated stage must never overwrite a finished verdict).
   * Returns the verdict as stored afterwards, or null when there is none.
   */
  async update(id: string, change: (current: Verdict) => Verdict | null): Promise<Verdict | null> {
    for (let tries = 0; tries < 50; tries++) {
      const [rev, json] = await this.redis.hmget(this.keys.verdict(id), 'rev', 'json');
      if (!rev || !json) return null;
      const current = JSON.parse(json) as Verdict;
      const next = change(current);
      if (!next) return current;
      const parsed = VerdictSchema.parse(next);
      const batchId = parsed.batch_id;
      const result = await (this.redis as unknown as Record<string, (...args: unknown[]) => Promise<number>>).verdictCas(
        this.keys.verdict(id),
        batchId ? this.keys.batchCounts(batchId) : this.keys.verdict(id),
        rev,
        JSON.stringify(parsed),
        parsed.status,
        this.retentionSeconds,
        batchId ? '1' : '0',
      );
      if (result === 1) return parsed;
      if (result === -1) return null;
    }
    throw new Error(`verdict ${id}: too many concurrent updates`);
  }

  /** Applies `patch` unless the verdict is already final. */
  patch(id: string, patch: (current: Verdict) => Partial<Verdict>): Promise<Verdict | null> {
    return this.update(id, (current) =>
      TERMINAL_STATUSES.has(current.status) ? null : { ...current, ...patch(current) },
    );
  }

  async batch(id: string): Promise<BatchRecord | null> {
    const [meta, counts] = await Promise.all([
      this.redis.hgetall(this.keys.batch(id)),
      this.redis.hgetall(this.keys.batchCounts(id)),
    ]);
    if (!meta.tenant) return null;
    const count = (s: VerdictStatus) => Number(counts[s] ?? 0);
    return {
      id,
      tenant: meta.tenant,
      total: Number(meta.total),
      created_at: meta.created_at,
      metadata: meta.metadata ? (JSON.parse(meta.metadata) as Record<string, unknown> | null) : null,
      counts: { queued: count('queued'), processing: count('processing'), succeeded: count('succeeded'), failed: count('failed') },
    };
  }

  /** Verdicts of a batch in submission order, `limit` at a time; the cursor is the last item's position. */
  async batchPage(id: string, cursor: number | null, limit: number): Promise<{ verdicts: Verdict[]; nextCursor: number | null }> {
    const min = cursor === null ? '-inf' : `(${cursor}`;
    const raw = await this.redis.zrangebyscore(this.keys.batchItems(id), min, '+inf', 'WITHSCORES', 'LIMIT', 0, limit + 1);
    const items: { id: string; score: number }[] = [];
    for (let i = 0; i < raw.length; i += 2) items.push({ id: raw[i], score: Number(raw[i + 1]) });
    const page = items.slice(0, limit);
    const pipe = this.redis.pipeline();
    for (const item of page) pipe.hget(this.keys.verdict(item.id), 'json');
    const results = page.length ? ((await pipe.exec()) ?? []) : [];
    const verdicts = results
      .map(([, json]) => (typeof json === 'string' ? (JSON.parse(json) as Verdict) : null))
      .filter((v): v is Verdict => v !== null);
    return { verdicts, nextCursor: items.length > limit ? page[page.length - 1].score : null };
  }

  /**
   * Claims an idempotency key for this tenant, or returns the earlier claim. The key itself is stored hashed.
   */
  async claimIdempotencyKey(tenant: string, keySha256: string, record: IdempotencyRecord): Promise<IdempotencyRecord | null> {
    const key = this.keys.idempotency(tenant, keySha256);
    const ok = await this.redis.set(key, JSON.stringify(record), 'EX', this.retentionSeconds, 'NX');
    if (ok === 'OK') return null;
    const existing = await this.redis.get(key);
    return existing ? (JSON.parse(existing) as IdempotencyRecord) : null;
  }

  /** Undoes a claim when the request it belonged to could not be enqueued, so a retry with the key can succeed. */
  async releaseIdempotencyKey(tenant: string, keySha256: string): Promise<void> {
    await this.redis.del(this.keys.idempotency(tenant, keySha256));
  }
}

export function verdictRetentionFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.VERDICT_RETENTION_SECONDS;
  return raw ? Number(raw) : DEFAULT_VERDICT_RETENTION_SECONDS;
}
