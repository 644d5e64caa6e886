/**
 * Per-tenant limits through the HTTP API, real Redis and real HTTP: the request rate (GCRA, checked before the body
 * is read), items in flight, the backlog share, each with its own 429 code and Retry-After; limits from the file over
 * the defaults; two intake replicas that never let one tenant past its in-flight limit; a bad limits file stops the
 * start-up.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queuePrefix, redisOptions, tenantKeys } from '@libs/queue';
import { VerdictStore } from '@libs/storage';
import { finishVerdict } from '@libs/worker';
import { createIntakeApp } from '../apps/intake-api/src/app';
import { startLocalPipeline, type LocalPipeline } from './harness/local-pipeline';
import { client, REDIS_URL } from './support';

const TENANTS = ['slow', 'fast', 'capped', 'other', 'sharer', 'par'] as const;
const KEYS = Object.fromEntries(TENANTS.map((t) => [t, `${t}-key-${process.pid}`])) as Record<(typeof TENANTS)[number], string>;

// Defaults: 2 items in flight; the file gives some tenants their own limits (0 = unlimited beats the default too).
const LIMITS_FILE = `
tenants:
  demo: { max_in_flight: 0 }
  slow: { rate_per_second: 0.5, burst: 2, max_in_flight: 0 }
  fast: { rate_per_second: 5, burst: 1, max_in_flight: 0 }
  capped: { max_in_flight: 3 }
  sharer: { max_backlog_share: 0.1, max_in_flight: 0 }
  par: { max_in_flight: 5 }
`;

const job = (prompt: string) => ({ prompt, answer: 'a' });

describe('per-tenant limits', () => {
  let p: LocalPipeline;
  let dir: string;
  let redis: Redis;
  let store: VerdictStore;
  const api = (tenant: keyof typeof KEYS | 'demo') => client(p.url, tenant === 'demo' ? p.apiKey : KEYS[tenant]);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tenant-limits-'));
    writeFileSync(join(dir, 'limits.yaml'), LIMITS_FILE);
    p = await startLocalPipeline({
      roles: ['intake'],
      quiet: true,
      tenants: KEYS,
      env: {
        REDIS_URL,
        INTAKE_MAX_BACKLOG: '40',
        INTAKE_RETRY_AFTER_SECONDS: '7',
        TENANT_MAX_IN_FLIGHT: '2',
        TENANT_LIMITS_FILE: join(dir, 'limits.yaml'),
      },
    });
    redis = new Redis(redisOptions(REDIS_URL));
    store = new VerdictStore(redis, queuePrefix(p.env));
  });
  afterAll(async () => {
    redis?.disconnect();
    await p?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('request rate: the burst passes, then 429 tenant_rate_limited with the GCRA wait as Retry-After, before the body is read', async () => {
    const firstSent = Date.now();
    expect((await api('slow').post('/v1/jobs', job('s1'))).status).toBe(202);
    const firstReply = Date.now();
    const second = await api('slow').post('/v1/batches', { items: [job('s2'), job('s3')] });
    expect(second.status).toBe(202);
    const refusedSent = Date.now();
    const refused = await api('slow').post('/v1/jobs', job('s4'));
    const refusedReply = Date.now();
    expect(refused.status, JSON.stringify(refused.body)).toBe(429);
    expect(refused.body.error.code).toBe('tenant_rate_limited');
    // By hand: T = 1 / 0.5 s = 2000 ms, burst 2. TAT after two requests is t1 + 2T (t1: the first's Redis time); a
    // third may pass at TAT + T - 2T = t1 + T: it waits 2000 ms minus the time from the first to itself.
    const waitMs = refused.body.error.details.retry_after_ms;
    expect(waitMs).toBeLessThanOrEqual(2000 - (refusedSent - firstReply) + 2);
    expect(waitMs).toBeGreaterThanOrEqual(2000 - (refusedReply - firstSent) - 2);
    expect(refused.body.error.details).toMatchObject({ retry_after_seconds: Math.ceil(waitMs / 1000), rate_per_second: 0.5, burst: 2 });
    // Retry-After: the wait in whole seconds, rounded up (2 unless the first requests took over a second).
    expect(refused.headers.get('retry-after')).toBe(String(Math.ceil(waitMs / 1000)));
    // Refused before the body is parsed: a body that is not even JSON gets the same 429, not a 400.
    const garbage = await client(p.url, KEYS.slow, { validate: false }).post('/v1/jobs', '{not json', { 'content-type': 'application/json' });
    expect(garbage.status).toBe(429);
    expect(garbage.body.error.code).toBe('tenant_rate_limited');
    // Reads are not limited, and other tenants are not slowed down.
    expect((await api('slow').get(second.body.poll_url)).status).toBe(200);
    for (let i = 0; i < 4; i++) expect((await api('demo').post('/v1/jobs', job(`d${i}`))).status).toBe(202);
    // After the wait, exactly one more passes (TAT moves by one T, to allowAt + 2T + T); the next may pass at
    // allowAt + T, where allowAt (the first refusal's instant plus its wait) lies in [refusedSent, refusedReply] + waitMs.
    await sleep(Math.max(0, refusedReply + waitMs + 20 - Date.now()));
    expect((await api('slow').post('/v1/jobs', job('s5'))).status).toBe(202);
    const againSent = Date.now();
    const again = await api('slow').post('/v1/jobs', job('s6'));
    const againReply = Date.now();
    expect(again.body.error.code).toBe('tenant_rate_limited');
    const againMs = again.body.error.details.retry_after_ms;
    expect(againMs).toBeGreaterThanOrEqual(refusedSent + waitMs + 2000 - againReply - 2);
    expect(againMs).toBeLessThanOrEqual(refusedReply + waitMs + 2000 - againSent + 2);
    expect(again.headers.get('retry-after')).toBe(String(Math.ceil(againMs / 1000)));
  });

  it('request rate: one request per 1/rate once the burst is spent (5/s, burst 1)', async () => {
    // Two at once: the burst (1) lets one through, the other waits at most T = 200 ms.
    const pair = async (n: number) => {
      const replies = await Promise.all([api('fast').post('/v1/jobs', job(`f${n}a`)), api('fast').post('/v1/jobs', job(`f${n}b`))]);
      expect(replies.map((r) => r.status).sort()).toEqual([202, 429]);
      return replies.find((r) => r.status === 429)!;
    };
    const refused = await pair(1);
    expect(refused.body.error.code).toBe('tenant_rate_limited');
    expect(refused.body.error.details.retry_after_ms).toBeLessThanOrEqual(200);
    expect(refused.headers.get('retry-after')).toBe('1');
    await sleep(refused.body.error.details.retry_after_ms + 10);
    await pair(2);
  });

  it('items in flight: the file limit (3) beats the default (2); another tenant is admitted; a final verdict frees a slot', async () => {
    const first = await api('capped').post('/v1/batches', { items: [job('c1'), job('c2')] });
    expect(first.status).toBe(202);
    const third = await api('capped').post('/v1/jobs', job('c3'));
    expect(third.status).toBe(202);
    const refused = await api('capped').post('/v1/jobs', job('c4'));
    expect(refused.status, JSON.stringify(refused.body)).toBe(429);
    expect(refused.body.error.code).toBe('tenant_in_flight_limit');
    expect(refused.body.error.details).toMatchObject({ limit: 3, in_flight: 3, retry_after_seconds: 7 });
    expect(refused.headers.get('retry-after')).toBe('7');
    // Meanwhile another tenant is admitted.
    expect((await api('demo').post('/v1/jobs', job('d-while-capped'))).status).toBe(202);
    // A batch that can never fit is too large, not a 429 that no wait would pass.
    const tooBig = await api('capped').post('/v1/batches', { items: [job('x1'), job('x2'), job('x3'), job('x4')] });
    expect(tooBig.status).toBe(413);
    expect(tooBig.body.error).toMatchObject({ code: 'batch_too_large', details: { limit: 3 } });
    // A verdict that becomes final frees its slot (the verdict script takes it off the tenant's count).
    expect(await finishVerdict(store, third.body.id, () => ({ decision: 'pass', final_answer: 'a' }))).not.toBeNull();
    expect(Number(await redis.hget(tenantKeys(p.env.QUEUE_PREFIX!).inflight, 'capped'))).toBe(2);
    expect((await api('capped').post('/v1/jobs', job('c5'))).status).toBe(202);
    expect((await api('capped').post('/v1/jobs', job('c6'))).body.error.code).toBe('tenant_in_flight_limit');
    // A tenant the file does not name has the default, 2.
    expect((await api('other').post('/v1/jobs', job('o1'))).status).toBe(202);
    expect((await api('other').post('/v1/jobs', job('o2'))).status).toBe(202);
    const other = await api('other').post('/v1/jobs', job('o3'));
    expect(other.body.error).toMatchObject({ code: 'tenant_in_flight_limit', details: { limit: 2, in_flight: 2 } });
  });

  it('backlog share: 0.1 of INTAKE_MAX_BACKLOG 40 is 4 items, then 429 tenant_backlog_share', async () => {
    expect((await api('sharer').post('/v1/batches', { items: [job('h1'), job('h2'), job('h3')] })).status).toBe(202);
    const refused = await api('sharer').post('/v1/batches', { items: [job('h4'), job('h5')] });
    expect(refused.status, JSON.stringify(refused.body)).toBe(429);
    expect(refused.body.error.code).toBe('tenant_backlog_share');
    expect(refused.body.error.details).toMatchObject({ limit: 4, share: 0.1, in_flight: 3, retry_after_seconds: 7 });
    expect(refused.headers.get('retry-after')).toBe('7');
    expect((await api('sharer').post('/v1/jobs', job('h6'))).status).toBe(202);
    expect((await api('sharer').post('/v1/jobs', job('h7'))).body.error.code).toBe('tenant_backlog_share');
    expect((await api('demo').post('/v1/jobs', job('d-while-share'))).status).toBe(202);
  });

  it('counts refusals by code in /metrics, without tenant names', async () => {
    const res = await fetch(`${p.url}/metrics`);
    const text = await res.text();
    for (const code of ['tenant_rate_limited', 'tenant_in_flight_limit', 'tenant_backlog_share']) {
      expect(text).toMatch(new RegExp(`moderation_intake_rejected_total\\{code="${code}"\\} [1-9]`));
    }
    for (const tenant of TENANTS) expect(text).not.toContain(`"${tenant}"`);
  });

  describe('two intake replicas', () => {
    let second: NestFastifyApplication;
    let secondUrl: string;
    beforeAll(async () => {
      second = await createIntakeApp({ env: p.env, logger: ['error'] });
      await second.listen(0, '127.0.0.1');
      secondUrl = (await second.getUrl()).replace('[::1]', '127.0.0.1');
    });
    afterAll(async () => {
      await second?.close();
    });

    it('never let one tenant past its in-flight limit together, whatever the interleaving', async () => {
      const post = async (url: string, path: string, body: unknown) => {
        const res = await fetch(`${url}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${KEYS.par}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        return { status: res.status, body: (await res.json()) as any };
      };
      const replies = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          post(i % 2 ? secondUrl : p.url, i % 7 === 0 ? '/v1/batches' : '/v1/jobs', i % 7 === 0 ? { items: [job(`pb${i}`), job(`pc${i}`)] } : job(`p${i}`)),
        ),
      );
      for (const r of replies) {
        if (r.status !== 202) expect(r.body.error.code, JSON.stringify(r.body)).toBe('tenant_in_flight_limit');
      }
      const accepted = replies.filter((r) => r.status === 202).reduce((n, r) => n + (r.body.items ?? 1), 0);
      expect(accepted).toBeLessThanOrEqual(5);
      expect(accepted).toBeGreaterThanOrEqual(4); // a 2-item batch may be refused with one slot left
      expect(Number(await redis.hget(tenantKeys(p.env.QUEUE_PREFIX!).inflight, 'par'))).toBe(accepted);
    });
  });
});

describe('a bad TENANT_LIMITS_FILE', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tenant-limits-bad-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('stops the start-up with a message naming the tenant and the field', async () => {
    const file = join(dir, 'limits.json');
    writeFileSync(file, JSON.stringify({ tenants: { acme: { max_backlog_share: 1.5 }, beta: { max_in_flight: -1 } } }));
    const env = { ...process.env, REDIS_URL, QUEUE_PREFIX: `{badlimits${process.pid}}`, TENANT_LIMITS_FILE: file };
    await expect(createIntakeApp({ env, logger: false })).rejects.toThrow(
      /TENANT_LIMITS_FILE .*limits\.json: tenant "acme" field max_backlog_share: must be at most 1; tenant "beta" field max_in_flight/,
    );
  });
});
