/**
 * The intake API against Redis that misbehaves: down, paused, full; concurrent duplicates of one Idempotency-Key;
 * two replicas sharing one backlog limit; and images collected when the last verdict that references them expires.
 * Real redis-server processes (private ones for the dead and full cases), real HTTP, no mocks.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { redisOptions } from '@libs/queue';
import { sha256Hex } from '@libs/storage';
import { startLocalPipeline, startPrivateRedis, type LocalPipeline } from './harness/local-pipeline';
import { createIntakeApp } from '../apps/intake-api/src/app';
import { client, REDIS_URL, solidPng, waitFor } from './support';

interface Timed {
  status: number;
  body: any;
  headers: Headers | null;
  ms: number;
}

/** POST with a hard client-side timeout: a request that hangs comes back as status 0. */
async function post(url: string, apiKey: string, path: string, body: unknown, headers: Record<string, string> = {}, timeoutMs = 5000): Promise<Timed> {
  const started = Date.now();
  try {
    const res = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* text */
    }
    return { status: res.status, body: parsed, headers: res.headers, ms: Date.now() - started };
  } catch {
    return { status: 0, body: null, headers: null, ms: Date.now() - started };
  }
}

async function scanKeys(redisUrl: string, pattern: string): Promise<string[]> {
  const redis = new Redis({ ...redisOptions(redisUrl), maxRetriesPerRequest: 1 });
  try {
    const out: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      out.push(...keys);
    } while (cursor !== '0');
    return out;
  } finally {
    redis.disconnect();
  }
}

const STAGES = ['generate', 'evaluate', 'align'] as const;

/** Every verdict under the prefix has its BullMQ job and every job its verdict. */
async function verdictsAndJobs(redisUrl: string, prefix: string): Promise<{ verdicts: string[]; jobs: string[] }> {
  const verdicts = (await scanKeys(redisUrl, `${prefix}:verdict:*`)).map((k) => k.slice(`${prefix}:verdict:`.length)).sort();
  const jobs: string[] = [];
  for (const stage of STAGES) {
    for (const key of await scanKeys(redisUrl, `${prefix}:${stage}:mod_*`)) jobs.push(key.slice(`${prefix}:${stage}:`.length));
  }
  return { verdicts, jobs: jobs.filter((j) => !j.includes(':')).sort() };
}

async function closeQuietly(p: LocalPipeline | undefined): Promise<void> {
  if (!p) return;
  await Promise.race([p.close({ keepKeys: true }), sleep(5000)]);
}

describe('Redis down or paused: fail fast, never create after answering', () => {
  let redis: Awaited<ReturnType<typeof startPrivateRedis>>;
  let p: LocalPipeline;

  beforeAll(async () => {
    redis = await startPrivateRedis();
    p = await startLocalPipeline({ roles: ['intake'], quiet: true, env: { REDIS_URL: redis.url } });
  });
  afterAll(async () => {
    await closeQuietly(p);
    await redis?.stop();
  });

  it('answers 503 redis_unavailable within 2 s while Redis is down, and creates nothing once it is back', async () => {
    expect((await post(p.url, p.apiKey, '/v1/jobs', { prompt: 'warm', answer: 'a' })).status).toBe(202);
    await redis.stop();
    const replies = await Promise.all([
      ...Array.from({ length: 6 }, (_, i) => post(p.url, p.apiKey, '/v1/jobs', { prompt: `down ${i}`, answer: 'a' })),
      // The webhook routes reach Redis through their own connection: the same 503, not a 500.
      post(p.url, p.apiKey, '/v1/webhooks', { url: 'https://hooks.example.com/moderation' }),
    ]);
    for (const r of replies) {
      expect(r.status, JSON.stringify(r.body)).toBe(503);
      expect(r.body.error.code).toBe('redis_unavailable');
      expect(Number(r.headers!.get('retry-after'))).toBeGreaterThan(0);
      expect(r.ms).toBeLessThan(2000);
    }
    redis = await startPrivateRedis({ port: redis.port });
    await sleep(2500); // the intake reconnects; anything it kept would be replayed now
    const { verdicts, jobs } = await verdictsAndJobs(redis.url, p.env.QUEUE_PREFIX!);
    expect(verdicts).toEqual([]);
    expect(jobs).toEqual([]);
    // And the door works again.
    await waitFor('intake to reconnect', async () => (await post(p.url, p.apiKey, '/v1/jobs', { prompt: 'back', answer: 'a' })).status === 202, 10_000, 250);
  });

  it('answers 503 within 2 s while Redis hangs (SIGSTOP), and creates nothing when it resumes', async () => {
    const before = await verdictsAndJobs(redis.url, p.env.QUEUE_PREFIX!);
    redis.process.kill('SIGSTOP');
    let replies: Timed[];
    try {
      replies = await Promise.all([
        post(p.url, p.apiKey, '/v1/jobs', { prompt: 'hung 1', answer: 'a' }),
        post(p.url, p.apiKey, '/v1/jobs', { prompt: 'hung 2', answer: 'a' }, { 'idempotency-key': 'hung-2' }),
        post(p.url, p.apiKey, '/v1/batches', {
          items: [
            { prompt: 'hung 3', answer: 'a' },
            { prompt: 'hung 4', answer: 'b' },
          ],
        }),
      ]);
    } finally {
      redis.process.kill('SIGCONT');
    }
    for (const r of replies) {
      expect(r.status, JSON.stringify(r.body)).toBe(503);
      expect(r.body.error.code).toBe('redis_unavailable');
      expect(r.ms).toBeLessThan(2500);
    }
    await sleep(2000);
    expect(await verdictsAndJobs(redis.url, p.env.QUEUE_PREFIX!)).toEqual(before);
    // The key that timed out is free again: a retry creates the job.
    const retry = await post(p.url, p.apiKey, '/v1/jobs', { prompt: 'hung 2', answer: 'a' }, { 'idempotency-key': 'hung-2' });
    expect(retry.status, JSON.stringify(retry.body)).toBe(202);
    expect(retry.body.created).toBe(true);
  });
});

describe('Idempotency-Key under concurrency', () => {
  let p: LocalPipeline;
  const body = (prompt: string) => ({ prompt, answer: 'a' });

  beforeAll(async () => {
    p = await startLocalPipeline({ roles: ['intake'], quiet: true, env: { REDIS_URL, INTAKE_MAX_BACKLOG: '4' } });
  });
  afterAll(async () => {
    await p?.close();
  });

  it('concurrent duplicates answer only once the job exists: every poll URL answers at once', async () => {
    const api = client(p.url, p.apiKey);
    const replies = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const r = await post(p.url, p.apiKey, '/v1/jobs', body('same'), { 'idempotency-key': 'concurrent-ok' });
        const poll = r.status === 202 ? await api.get(r.body.poll_url) : undefined;
        return { r, poll };
      }),
    );
    for (const { r, poll } of replies) {
      expect(r.status, JSON.stringify(r.body)).toBe(202);
      expect(poll!.status, r.body.poll_url).toBe(200);
    }
    expect(new Set(replies.map(({ r }) => r.body.id)).size).toBe(1);
    expect(replies.filter(({ r }) => r.body.created === true)).toHaveLength(1);
  });

  it('when the first request fails, no duplicate gets a poll URL that never answers', async () => {
    const api = client(p.url, p.apiKey);
    for (let i = 0; i < 3; i++) expect((await post(p.url, p.apiKey, '/v1/jobs', body(`fill ${i}`))).status).toBe(202);
    // The backlog (limit 4) now holds 4 jobs: every attempt fails with 429.
    const replies = await Promise.all(
      Array.from({ length: 10 }, () => post(p.url, p.apiKey, '/v1/jobs', body('doomed'), { 'idempotency-key': 'concurrent-fail' })),
    );
    for (const r of replies) {
      if (r.status === 202) expect((await api.get(r.body.poll_url)).status, `202 ${r.body.id}`).toBe(200);
      else expect([429, 409], JSON.stringify(r.body)).toContain(r.status);
    }
    expect(replies.filter((r) => r.status === 202)).toEqual([]);
  });

  it('a duplicate of a request still in progress gets 409 idempotency_in_progress after a bounded wait', async () => {
    // What a first request holds while it works: a pending claim of the key.
    const redis = new Redis(redisOptions(REDIS_URL));
    const key = 'in-progress';
    const bodySha = sha256Hex(JSON.stringify([[['slow', 'a', 'default', null, null]], null]));
    const id = 'mod_' + sha256Hex('job', '\0', 'demo', '\0', sha256Hex(key)).slice(0, 24);
    await redis.set(
      `${p.env.QUEUE_PREFIX}:idem:demo:${sha256Hex(key)}`,
      JSON.stringify({ kind: 'job', id, bodySha256: bodySha, state: 'pending', token: 'someone-else' }),
      'PX',
      10_000,
    );
    redis.disconnect();
    const r = await post(p.url, p.apiKey, '/v1/jobs', body('slow'), { 'idempotency-key': key });
    expect(r.status, JSON.stringify(r.body)).toBe(409);
    expect(r.body.error.code).toBe('idempotency_in_progress');
    expect(r.body.error.details.retry_after_seconds).toBeGreaterThan(0);
    expect(r.headers!.get('retry-after')).toBe(String(r.body.error.details.retry_after_seconds));
    expect(r.ms).toBeGreaterThan(1000);
    expect(r.ms).toBeLessThan(3000);
  });
});

describe('the backlog limit holds across replicas', () => {
  let p: LocalPipeline;
  let second: NestFastifyApplication;
  let secondUrl: string;

  beforeAll(async () => {
    p = await startLocalPipeline({ roles: ['intake'], quiet: true, env: { REDIS_URL, INTAKE_MAX_BACKLOG: '20' } });
    second = await createIntakeApp({ env: p.env, logger: ['error'] });
    await second.listen(0, '127.0.0.1');
    secondUrl = (await second.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(async () => {
    await second?.close();
    await p?.close();
  });

  it('two intake apps on one prefix never accept more than the limit together', async () => {
    const replies = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        i % 5 === 0
          ? post(i % 2 ? secondUrl : p.url, p.apiKey, '/v1/batches', {
              items: [
                { prompt: `b${i}`, answer: 'a' },
                { prompt: `c${i}`, answer: 'a' },
              ],
            })
          : post(i % 2 ? secondUrl : p.url, p.apiKey, '/v1/jobs', { prompt: `r${i}`, answer: 'a' }),
      ),
    );
    const accepted = replies.filter((r) => r.status === 202).reduce((n, r) => n + (r.body.items ?? 1), 0);
    for (const r of replies) expect([202, 429], JSON.stringify(r.body)).toContain(r.status);
    expect(accepted).toBeLessThanOrEqual(20);
    expect(accepted).toBeGreaterThanOrEqual(19); // a 2-item batch may be refused with one slot left
    const { verdicts, jobs } = await verdictsAndJobs(REDIS_URL, p.env.QUEUE_PREFIX!);
    expect(verdicts).toHaveLength(accepted);
    expect(jobs).toEqual(verdicts);
  });
});

describe('a full Redis', () => {
  let redis: Awaited<ReturnType<typeof startPrivateRedis>>;
  let p: LocalPipeline;
  let filler: Redis;
  let junk = 0;

  beforeAll(async () => {
    redis = await startPrivateRedis({ args: ['--maxmemory', '6mb'] });
    p = await startLocalPipeline({ roles: ['intake'], quiet: true, env: { REDIS_URL: redis.url, INTAKE_MAX_BATCH_ITEMS: '50' } });
    filler = new Redis({ ...redisOptions(redis.url), maxRetriesPerRequest: 1 });
  });
  afterAll(async () => {
    filler?.disconnect();
    await closeQuietly(p);
    await redis?.stop();
  });

  async function fill(): Promise<void> {
    for (;;) {
      try {
        await filler.set(`junk:${junk++}`, 'x'.repeat(20_000));
      } catch (err) {
        expect(String(err)).toMatch(/OOM/);
        break;
      }
    }
    // Memory hovers around the limit (client buffers come and go): put the limit clearly below what is used.
    await setLimit(-200_000);
  }

  async function setLimit(aboveUsed: number): Promise<void> {
    const used = Number(/used_memory:(\d+)/.exec(await filler.info('memory'))![1]);
    await filler.config('SET', 'maxmemory', String(used + aboveUsed));
  }

  it('refuses writes with 503 redis_full and leaves no verdict without its job (or job without its verdict)', async () => {
    expect((await post(p.url, p.apiKey, '/v1/jobs', { prompt: 'warm', answer: 'a' })).status).toBe(202);
    await fill();
    for (const [path, body, headers] of [
      ['/v1/jobs', { prompt: 'full', answer: 'a' }, {}],
      ['/v1/jobs', { prompt: 'full', answer: 'a' }, { 'idempotency-key': 'full-1' }],
      ['/v1/batches', { items: [{ prompt: 'x', answer: 'a' }, { prompt: 'y' }] }, {}],
    ] as const) {
      const r = await post(p.url, p.apiKey, path, body, headers);
      expect(r.status, JSON.stringify(r.body)).toBe(503);
      expect(r.body.error.code).toBe('redis_full');
    }
    // At the edge: free a little, then send batches until Redis refuses again. Each batch is all or nothing.
    await setLimit(400_000);
    const accepted: string[] = [];
    let refused = 0;
    for (let i = 0; i < 60 && refused < 3; i++) {
      const items = Array.from({ length: 40 }, (_, j) => ({ prompt: `edge ${i} ${j} ${'p'.repeat(300)}`, answer: 'a'.repeat(300) }));
      const r = await post(p.url, p.apiKey, '/v1/batches', { items });
      if (r.status === 202) accepted.push(...r.body.job_ids);
      else {
        expect(r.status, JSON.stringify(r.body)).toBe(503);
        expect(r.body.error.code).toBe('redis_full');
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(0);
    expect(accepted.length).toBeGreaterThan(0);
    const { verdicts, jobs } = await verdictsAndJobs(redis.url, p.env.QUEUE_PREFIX!);
    expect(jobs).toEqual(verdicts);
    for (const id of accepted) expect(verdicts).toContain(id);
    expect(verdicts).toHaveLength(accepted.length + 1);
  });
});

describe('blobs are collected when the last verdict that references them expires', () => {
  let p: LocalPipeline;

  beforeAll(async () => {
    p = await startLocalPipeline({ roles: ['intake'], quiet: true, env: { REDIS_URL, VERDICT_RETENTION_SECONDS: '3', BLOB_GC_INTERVAL_SECONDS: '0.25' } });
  });
  afterAll(async () => {
    await p?.close();
  });

  const blobPath = (sha: string) => join(p.blobDir, sha.slice(0, 2), sha.slice(2, 4), sha);

  it('deletes an expired image, keeps one a newer verdict still references', async () => {
    const api = client(p.url, p.apiKey);
    const a = await solidPng(32, 32, [200, 10, 10]);
    const b = await solidPng(32, 32, [10, 10, 200]);
    const jobA = await api.post('/v1/jobs', { prompt: 'a', image: a.toString('base64') });
    const jobB1 = await api.post('/v1/jobs', { prompt: 'b1', image: b.toString('base64') });
    expect([jobA.status, jobB1.status]).toEqual([202, 202]);
    expect(existsSync(blobPath(sha256Hex(a)))).toBe(true);
    await sleep(2000);
    const jobB2 = await api.post('/v1/jobs', { prompt: 'b2', image: b.toString('base64') });
    expect(jobB2.status).toBe(202);
    await waitFor('image a to be collected', async () => !existsSync(blobPath(sha256Hex(a))), 10_000, 50);
    expect((await api.get(jobA.body.poll_url)).status).toBe(404);
    // b's first verdict has expired too, but b2 still references the image.
    expect((await api.get(jobB2.body.poll_url)).status).toBe(200);
    expect(existsSync(blobPath(sha256Hex(b)))).toBe(true);
    await waitFor('image b to be collected', async () => !existsSync(blobPath(sha256Hex(b))), 10_000, 50);
    expect((await api.get(jobB2.body.poll_url)).status).toBe(404);
    // Uploading the same bytes again stores them again.
    expect((await api.post('/v1/jobs', { prompt: 'a again', image: a.toString('base64') })).status).toBe(202);
    expect(existsSync(blobPath(sha256Hex(a)))).toBe(true);
  });
});
