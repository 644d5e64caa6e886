/**
 * Blob collection and the intake's creation transaction against a real Redis: a concurrent upload of bytes being
 * deleted never loses its file, a lost lock puts the file back, and a commit past its gate writes nothing.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queuedVerdict, type StageJob, type Verdict } from '@libs/contracts';
import { StageDispatcher, intakeKeys, producerRedisOptions, redisOptions } from '@libs/queue';
import { BlobCollector, BlobRefs, FileBlobStore, sha256Hex, VerdictStore } from '@libs/storage';

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const PREFIX = `{blobgc${process.pid}}`;

describe('blob collection', () => {
  let redis: Redis;
  let dir: string;

  beforeAll(() => {
    redis = new Redis(redisOptions(REDIS_URL));
    dir = mkdtempSync(join(tmpdir(), 'blobgc-'));
  });
  afterAll(async () => {
    const keys = await redis.keys(`${PREFIX}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
  });

  const file = (sha: string) => join(dir, sha.slice(0, 2), sha.slice(2, 4), sha);

  it('deletes blobs whose references expired and keeps one a newer reference holds', async () => {
    const refs = new BlobRefs(redis, PREFIX, 1);
    const store = new FileBlobStore(dir, refs);
    const collector = new BlobCollector(refs, store);
    const a = await store.put(new TextEncoder().encode('image a'));
    const b = await store.put(new TextEncoder().encode('image b'));
    await sleep(600);
    await store.put(new TextEncoder().encode('image b')); // a newer upload (or verdict) of b
    expect(await collector.collectOnce()).toEqual({ deleted: 0, restored: 0 });
    await sleep(600);
    expect(await collector.collectOnce()).toEqual({ deleted: 1, restored: 0 });
    expect(existsSync(file(a))).toBe(false);
    expect(existsSync(file(b))).toBe(true);
    expect(await refs.expiry(a)).toBeNull();
    await sleep(600);
    expect((await collector.collectOnce()).deleted).toBe(1);
    expect(existsSync(file(b))).toBe(false);
  });

  it('an upload of bytes being deleted waits for the deletion, then writes its file', async () => {
    const refs = new BlobRefs(redis, PREFIX, 1);
    const store = new FileBlobStore(dir, refs);
    const bytes = new TextEncoder().encode('raced image');
    const sha = await store.put(bytes);
    await sleep(1100);
    const claimed = await refs.claim('collector-1');
    expect(claimed).toContain(sha);
    for (const other of claimed.filter((c) => c !== sha)) await store.removeClaimed(other, () => refs.release(other, 'collector-1'));
    let uploaded = false;
    const upload = store.put(bytes).then(() => (uploaded = true));
    await sleep(150);
    expect(uploaded).toBe(false); // waits while the deletion lock is held
    expect(await store.removeClaimed(sha, () => refs.release(sha, 'collector-1'))).toBe('deleted');
    await upload;
    expect(existsSync(file(sha))).toBe(true);
    expect(await refs.expiry(sha)).toBeGreaterThan(Date.now());
  });

  it('a deletion whose lock expired meanwhile puts the file back (an upload may have relied on it)', async () => {
    const refs = new BlobRefs(redis, PREFIX, 1);
    const store = new FileBlobStore(dir, refs);
    const bytes = new TextEncoder().encode('slow collector');
    const sha = await store.put(bytes);
    await sleep(1100);
    const claimed = await refs.claim('collector-2', 10, 50);
    expect(claimed).toContain(sha);
    for (const other of claimed.filter((c) => c !== sha)) await store.removeClaimed(other, () => refs.release(other, 'collector-2'));
    await sleep(100); // the collector stalls past its lock
    await store.put(bytes); // registers, finds the file, does not write it
    expect(await store.removeClaimed(sha, () => refs.release(sha, 'collector-2'))).toBe('restored');
    expect(existsSync(file(sha))).toBe(true);
    expect(Buffer.from((await store.get(sha))!).toString()).toBe('slow collector');
  });
});

describe('backfill of images stored before collection', () => {
  let redis: Redis;
  let dir: string;
  const prefix = `{blobfill${process.pid}}`;
  beforeAll(() => {
    redis = new Redis(redisOptions(REDIS_URL));
    dir = mkdtempSync(join(tmpdir(), 'blobfill-'));
  });
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
  });

  it('registers unreferenced images for one retention period, keeps a referenced one as it is, and they are then collected', async () => {
    // Stored by a store without references: what every image written before collection existed looks like.
    const old = new FileBlobStore(dir);
    const a = await old.put(new TextEncoder().encode('old image a'));
    const b = await old.put(new TextEncoder().encode('old image b'));
    const refs = new BlobRefs(redis, prefix, 1);
    const store = new FileBlobStore(dir, refs);
    const collector = new BlobCollector(refs, store);
    const c = await new FileBlobStore(dir, new BlobRefs(redis, prefix, 3600)).put(new TextEncoder().encode('referenced image c'));
    const cExpiry = await refs.expiry(c);
    expect(await collector.collectOnce()).toEqual({ deleted: 0, restored: 0 }); // without a reference, never due
    const listed: string[] = [];
    for await (const sha of store.list()) listed.push(sha);
    expect(listed.sort()).toEqual([a, b, c].sort());
    expect(await refs.backfill(store.list())).toBe(2);
    expect(await refs.expiry(c)).toBe(cExpiry);
    expect(await refs.backfill(store.list())).toBe(0); // idempotent
    await sleep(1200);
    expect(await collector.collectOnce()).toEqual({ deleted: 2, restored: 0 });
    expect(existsSync(join(dir, a.slice(0, 2), a.slice(2, 4), a))).toBe(false);
    expect(existsSync(join(dir, b.slice(0, 2), b.slice(2, 4), b))).toBe(false);
    expect(existsSync(join(dir, c.slice(0, 2), c.slice(2, 4), c))).toBe(true);
  });

  it('modctl blobs backfill registers them from BLOB_DIR', async () => {
    const fresh = mkdtempSync(join(tmpdir(), 'blobfill-cli-'));
    try {
      await new FileBlobStore(fresh).put(new TextEncoder().encode('old image d'));
      const { run } = await import('../../../apps/modctl/src/commands/blobs');
      const env = { REDIS_URL, QUEUE_PREFIX: prefix, BLOB_DIR: fresh, VERDICT_RETENTION_SECONDS: '60' };
      const lines: string[] = [];
      const log = console.log;
      console.log = (line: string) => lines.push(line);
      try {
        expect(await run(['backfill', '--json'], env)).toBe(0);
      } finally {
        console.log = log;
      }
      expect(JSON.parse(lines[0])).toMatchObject({ registered: 1, retention_seconds: 60 });
      expect(await run(['nonsense'], env)).toBe(2);
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });
});

describe('creation transaction', () => {
  let redis: Redis;
  let queue: Queue;
  let dispatcher: StageDispatcher;
  let verdicts: VerdictStore;

  beforeAll(async () => {
    redis = new Redis(redisOptions(REDIS_URL));
    queue = new Queue('evaluate', { connection: producerRedisOptions(REDIS_URL, {}), prefix: PREFIX });
    await queue.waitUntilReady();
    dispatcher = new StageDispatcher({ evaluate: queue });
    verdicts = new VerdictStore(redis, PREFIX, 60);
  });
  afterAll(async () => {
    await queue.close();
    const keys = await redis.keys(`${PREFIX}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  function item(id: string, imageSha256: string | null = null): { verdict: Verdict; job: StageJob } {
    const job: StageJob = { id, tenant: 't', prompt: 'p', answer: 'a', profile: 'none', policy: 'both', attempt: 0, imageSha256: imageSha256 ?? undefined };
    const verdict = queuedVerdict({
      id,
      policy: 'both',
      prompt: 'p',
      original_answer: 'a',
      input_sha256: 'b'.repeat(64),
      image_sha256: imageSha256,
      profile: 'none',
      batch_id: null,
      metadata: null,
    });
    return { verdict, job };
  }

  it('commits verdict, job and reservation release together', async () => {
    const r = await dispatcher.reserve(1, 10);
    expect(r.ok).toBe(true);
    const { verdict, job } = item('mod_tx_ok');
    const reservation = r.ok ? r.reservation : undefined;
    expect(await verdicts.commitCreation(dispatcher, { tenant: 't', verdicts: [verdict], jobs: [{ stage: 'evaluate', job }], reservation }, 1000)).toBe(
      'created',
    );
    expect(await verdicts.get('mod_tx_ok')).not.toBeNull();
    expect((await queue.getJob('mod_tx_ok'))?.data.id).toBe('mod_tx_ok');
    expect(await redis.zcard(intakeKeys(PREFIX).reservations)).toBe(0);
  });

  it('a commit that runs past its deadline (the client was answered) writes nothing', async () => {
    const r = await dispatcher.reserve(1, 10);
    if (!r.ok) throw new Error('no reservation');
    const { verdict, job } = item('mod_tx_late');
    // As if the reservation's reply came 5 s ago: any deadline derived from it with a 1 s wait has passed.
    const stale = { ...r.reservation, receivedAt: r.reservation.receivedAt, redisTimeMs: r.reservation.redisTimeMs - 5000 };
    expect(await verdicts.commitCreation(dispatcher, { tenant: 't', verdicts: [verdict], jobs: [{ stage: 'evaluate', job }], reservation: stale }, 1000)).toBe(
      'deadline',
    );
    expect(await verdicts.get('mod_tx_late')).toBeNull();
    expect(await queue.getJob('mod_tx_late')).toBeUndefined();
    expect(await redis.exists(`${PREFIX}:evaluate:mod_tx_late`)).toBe(0); // no placeholder left
    await dispatcher.release(r.reservation);
  });

  it('a verdict whose image is no longer registered (collected meanwhile) is not created', async () => {
    const r = await dispatcher.reserve(1, 10);
    if (!r.ok) throw new Error('no reservation');
    const { verdict, job } = item('mod_tx_blob', sha256Hex('never registered'));
    expect(
      await verdicts.commitCreation(dispatcher, { tenant: 't', verdicts: [verdict], jobs: [{ stage: 'evaluate', job }], reservation: r.reservation }, 1000),
    ).toBe('blob');
    expect(await verdicts.get('mod_tx_blob')).toBeNull();
    expect(await queue.getJob('mod_tx_blob')).toBeUndefined();
    await dispatcher.release(r.reservation);
  });
});
