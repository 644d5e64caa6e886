import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queuedVerdict, type StageJob, type Verdict } from '@libs/contracts';
import { producerRedisOptions, redisOptions, StageDispatcher, tenantKeys, webhookKeys } from '@libs/queue';
import { FileBlobStore, sha256Hex, VerdictStore } from '@libs/storage';
import { finishVerdict } from '@libs/worker';

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const PREFIX = `{storagetest${process.pid}}`;

function verdict(id: string, batchId: string | null = null): Verdict {
  return queuedVerdict({
    id,
    policy: 'both',
    prompt: 'p',
    original_answer: null,
    input_sha256: 'b'.repeat(64),
    image_sha256: null,
    profile: 'none',
    batch_id: batchId,
    metadata: null,
  });
}

describe('FileBlobStore', () => {
  const dir = mkdtempSync(join(tmpdir(), 'blobs-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('stores by sha256, once, with no temp files left; missing blobs are null', async () => {
    const store = new FileBlobStore(dir);
    const bytes = new TextEncoder().encode('photo bytes');
    const sha = await store.put(bytes);
    expect(sha).toBe(sha256Hex(bytes));
    expect(await Promise.all([store.put(bytes), store.put(bytes)])).toEqual([sha, sha]);
    expect(Buffer.from((await store.get(sha))!).toString()).toBe('photo bytes');
    expect(await store.has(sha)).toBe(true);
    expect(await store.get('0'.repeat(64))).toBeNull();
    const files = readdirSync(dir, { recursive: true } as never) as unknown as string[];
    expect(files.filter((f) => String(f).endsWith('.tmp'))).toEqual([]);
    await expect(store.get('../etc/passwd')).rejects.toThrow(/sha256/);
  });
});

describe('VerdictStore', () => {
  let redis: Redis;
  let store: VerdictStore;
  let queue: Queue;
  let dispatcher: StageDispatcher;

  beforeAll(async () => {
    redis = new Redis(redisOptions(REDIS_URL));
    store = new VerdictStore(redis, PREFIX, 120);
    queue = new Queue('evaluate', { connection: producerRedisOptions(REDIS_URL, {}), prefix: PREFIX });
    await queue.waitUntilReady();
    dispatcher = new StageDispatcher({ evaluate: queue });
  });
  afterAll(async () => {
    await queue.close();
    const keys = await redis.keys(`${PREFIX}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  /** Creates verdicts as intake does: with their jobs, in the one creation transaction. */
  function create(tenant: string, verdicts: Verdict[], batch?: Parameters<VerdictStore['commitCreation']>[1]['batch']) {
    const jobs = verdicts.map((v) => ({
      stage: 'evaluate' as const,
      job: { id: v.id, tenant, prompt: v.prompt, answer: 'a', profile: v.profile, policy: v.policy, attempt: 0, batchId: v.batch_id ?? undefined } as StageJob,
    }));
    return store.commitCreation(dispatcher, { tenant, verdicts, jobs, batch }, 1000);
  }

  it('creates once, with the retention TTL and tenant ownership', async () => {
    expect(await create('a', [verdict('mod_one')])).toBe('created');
    expect(await create('b', [verdict('mod_one')])).toBe('exists');
    expect((await store.get('mod_one'))!.tenant).toBe('a');
    const ttl = await redis.ttl(`${PREFIX}:verdict:mod_one`);
    expect(ttl).toBeGreaterThan(100);
    expect(ttl).toBeLessThanOrEqual(120);
  });

  it('concurrent updates never lose a write; a final verdict is never overwritten', async () => {
    await create('a', [verdict('mod_two')]);
    await Promise.all(Array.from({ length: 20 }, () => store.patch('mod_two', (v) => ({ attempts: v.attempts + 1 }))));
    expect((await store.get('mod_two'))!.verdict.attempts).toBe(20);
    await finishVerdict(store, 'mod_two', () => ({ decision: 'pass', final_answer: 'x' }));
    const again = await finishVerdict(store, 'mod_two', () => ({ decision: 'blocked', final_answer: 'y' }));
    expect(again!.decision).toBe('pass');
    expect((await store.get('mod_two'))!.verdict).toMatchObject({ status: 'succeeded', decision: 'pass', final_answer: 'x' });
    expect(await store.patch('mod_missing', () => ({}))).toBeNull();
  });

  it('batches: counters follow status transitions and pages keep submission order', async () => {
    const ids = Array.from({ length: 5 }, (_, i) => `mod_b_${i}`);
    expect(
      await create(
        'a',
        ids.map((id) => verdict(id, 'bat_one')),
        { id: 'bat_one', tenant: 'a', total: 5, created_at: new Date().toISOString(), metadata: { k: 1 } },
      ),
    ).toBe('created');
    await store.patch(ids[0], () => ({ status: 'processing' }));
    await finishVerdict(store, ids[1], () => ({ decision: 'pass' }));
    await store.patch(ids[2], () => ({ status: 'failed' }));
    const batch = (await store.batch('bat_one'))!;
    expect(batch).toMatchObject({ tenant: 'a', total: 5, metadata: { k: 1 }, counts: { queued: 2, processing: 1, succeeded: 1, failed: 1 } });
    const first = await store.batchPage('bat_one', null, 2);
    const second = await store.batchPage('bat_one', first.nextCursor, 2);
    const third = await store.batchPage('bat_one', second.nextCursor, 2);
    expect([...first.verdicts, ...second.verdicts, ...third.verdicts].map((v) => v.id)).toEqual(ids);
    expect(third.nextCursor).toBeNull();
    expect(await store.batch('bat_none')).toBeNull();
  });

  it('tenant accounting: creation counts items in flight, each first final verdict takes one off, exactly once', async () => {
    const inflight = async (tenant: string) => Number((await redis.hget(tenantKeys(PREFIX).inflight, tenant)) ?? 0);
    await create('acct', [verdict('mod_acct_1'), verdict('mod_acct_2'), verdict('mod_acct_3')]);
    expect(await inflight('acct')).toBe(3);
    await store.patch('mod_acct_1', () => ({ status: 'processing' }));
    expect(await inflight('acct')).toBe(3);
    await finishVerdict(store, 'mod_acct_1', () => ({ decision: 'pass' }));
    await finishVerdict(store, 'mod_acct_1', () => ({ decision: 'pass' }));
    await store.patch('mod_acct_2', () => ({ status: 'failed' }));
    expect(await inflight('acct')).toBe(1);
    await finishVerdict(store, 'mod_acct_3', () => ({ decision: 'pass' }));
    // The last one leaves no zero entry behind (HDEL), so the hash holds only tenants with work.
    expect(await redis.hexists(tenantKeys(PREFIX).inflight, 'acct')).toBe(0);
  });

  it('outbox: one event per final verdict for subscribed tenants or callbacks, and one batch.completed', async () => {
    const { outbox, subscribed } = webhookKeys(PREFIX);
    const events = async () =>
      ((await redis.xrange(outbox, '-', '+')) as [string, string[]][]).map(([, f]) =>
        Object.fromEntries(f.map((_, i, a) => (i % 2 ? [] : [a[i], a[i + 1]])).filter((e) => e.length)),
      );
    await redis.del(outbox);
    // Not subscribed, no callback: nothing is written.
    await create('quiet', [verdict('mod_quiet')]);
    await finishVerdict(store, 'mod_quiet', () => ({ decision: 'pass' }));
    expect(await events()).toEqual([]);
    // A per-job callback: announced even though the tenant has no endpoint.
    await store.commitCreation(
      dispatcher,
      {
        tenant: 'quiet',
        verdicts: [verdict('mod_cb')],
        jobs: [
          { stage: 'evaluate', job: { id: 'mod_cb', tenant: 'quiet', prompt: 'p', answer: 'a', profile: 'none', policy: 'both', attempt: 0 } as StageJob },
        ],
        callbacks: ['https://hooks.example/x'],
      },
      1000,
    );
    await store.patch('mod_cb', () => ({ status: 'failed' }));
    await store.patch('mod_cb', () => ({ status: 'failed' }));
    expect(await events()).toEqual([
      { type: 'verdict.failed', id: 'mod_cb', tenant: 'quiet', batch: '', callback: 'https://hooks.example/x', at: expect.any(String) },
    ]);
    // A subscribed tenant's batch: one event per item, then batch.completed once.
    await redis.del(outbox);
    await redis.sadd(subscribed, 'loud');
    const ids = ['mod_loud_0', 'mod_loud_1'];
    await create(
      'loud',
      ids.map((id) => verdict(id, 'bat_loud')),
      { id: 'bat_loud', tenant: 'loud', total: 2, created_at: new Date().toISOString(), metadata: null },
    );
    await finishVerdict(store, ids[0], () => ({ decision: 'pass' }));
    expect((await events()).map((e) => e.type)).toEqual(['verdict.completed']);
    await store.patch(ids[1], () => ({ status: 'failed' }));
    await store.patch(ids[1], () => ({ status: 'failed' }));
    const all = await events();
    expect(all.map((e) => [e.type, e.id])).toEqual([
      ['verdict.completed', 'mod_loud_0'],
      ['verdict.failed', 'mod_loud_1'],
      ['batch.completed', 'bat_loud'],
    ]);
    expect(all.every((e) => e.tenant === 'loud' && e.batch === 'bat_loud')).toBe(true);
    await redis.srem(subscribed, 'loud');
  });

  it('idempotency keys: first claim wins (pending), a duplicate waits boundedly, only the holder releases it', async () => {
    const record = { kind: 'job' as const, id: 'mod_x', bodySha256: 'c'.repeat(64) };
    const first = await store.claimIdempotencyKey('a', 'k'.repeat(64), record);
    expect(first.token).toEqual(expect.any(String));
    // Another body with the same key: answered at once (the caller reports the conflict).
    expect((await store.claimIdempotencyKey('a', 'k'.repeat(64), { ...record, bodySha256: 'd'.repeat(64) }, 200)).earlier).toEqual(record);
    // The same body while the first is pending: a bounded wait, then idempotency_in_progress.
    const started = Date.now();
    await expect(store.claimIdempotencyKey('a', 'k'.repeat(64), record, 300)).rejects.toMatchObject({ code: 'idempotency_in_progress' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect((await store.claimIdempotencyKey('b', 'k'.repeat(64), record)).token).toEqual(expect.any(String));
    await store.releaseIdempotencyKey('a', 'k'.repeat(64), 'not-the-holder');
    await expect(store.claimIdempotencyKey('a', 'k'.repeat(64), record, 100)).rejects.toMatchObject({ code: 'idempotency_in_progress' });
    // A waiting duplicate takes the key over once the holder releases it.
    const waiting = store.claimIdempotencyKey('a', 'k'.repeat(64), record, 2000);
    await new Promise((r) => setTimeout(r, 100));
    await store.releaseIdempotencyKey('a', 'k'.repeat(64), first.token!);
    expect((await waiting).token).toEqual(expect.any(String));
  });
});
