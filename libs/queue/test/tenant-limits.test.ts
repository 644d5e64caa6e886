/**
 * Per-tenant limits against a real Redis: the GCRA rate script (burst, then one per 1/rate, Retry-After by hand,
 * idle keys expire), the admission script's per-tenant counting (in-flight hash + the tenant's own reservations,
 * tenant names with ':'), and the limits file (overrides over defaults, errors naming tenant and field).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  RESERVE_LUA,
  TenantLimitsCatalog,
  TenantRateLimiter,
  backlogKeys,
  backlogShareCap,
  deleteKeys,
  intakeKeys,
  parseTenantLimitsFile,
  redisOptions,
  reservationMember,
  tenantHex,
  tenantKeys,
  tenantLimitsFromEnv,
} from '@libs/queue';

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const PREFIX = `{tenantlimits${process.pid}}`;

let redis: Redis;
beforeAll(() => {
  redis = new Redis(redisOptions(REDIS_URL));
});
afterAll(async () => {
  await deleteKeys(REDIS_URL, PREFIX);
  redis.disconnect();
});
beforeEach(async () => {
  await deleteKeys(REDIS_URL, PREFIX);
});

describe('TenantRateLimiter (GCRA in Redis)', () => {
  it('admits the burst at once, then one request per 1/rate; the wait is the hand-computed one', async () => {
    const limiter = new TenantRateLimiter(redis, PREFIX);
    const limits = { ratePerSecond: 10, burst: 3 }; // T = 100 ms
    // Sent at once (one connection pipelines them), so Redis runs the four within well under T of each other.
    const started = Date.now();
    const [a, b, c, refused] = await Promise.all([1, 2, 3, 4].map(() => limiter.consume('acme', limits)));
    const elapsed = Date.now() - started;
    expect([a, b, c].map((d) => (d.allowed ? d.remaining : -1))).toEqual([2, 1, 0]);
    // TAT after three is first + 3T; the fourth may pass at TAT + T - 3T = first + T: it waits T minus what elapsed.
    expect(refused.allowed).toBe(false);
    if (refused.allowed) return;
    expect(refused.retryAfterMs).toBeLessThanOrEqual(100);
    expect(refused.retryAfterMs).toBeGreaterThanOrEqual(100 - elapsed - 2);
    expect(refused.retryAfterSeconds).toBe(1);
    await sleep(refused.retryAfterMs + 5);
    // One passes (TAT first + 4T); the one right behind it may pass at first + 5T - 3T = first + 2T: one interval
    // after the fourth's instant, whatever the sleep overshot.
    const sent = Date.now();
    const [one, next] = await Promise.all([limiter.consume('acme', limits), limiter.consume('acme', limits)]);
    const replied = Date.now();
    expect(one.allowed).toBe(true);
    expect(next.allowed).toBe(false);
    if (!next.allowed) {
      expect(next.retryAfterMs).toBeGreaterThanOrEqual(started + 200 - replied - 2);
      expect(next.retryAfterMs).toBeLessThanOrEqual(started + elapsed + 200 - sent + 2);
      expect(next.retryAfterMs).toBeLessThanOrEqual(100);
    }
    // A refused request does not move the TAT: waiting one interval is enough.
    await sleep(105);
    expect((await limiter.consume('acme', limits)).allowed).toBe(true);
  });

  it('Retry-After is the wait in whole seconds, rounded up (rate 0.2/s: 5 s)', async () => {
    const limiter = new TenantRateLimiter(redis, PREFIX);
    expect((await limiter.consume('slow', { ratePerSecond: 0.2, burst: 1 })).allowed).toBe(true);
    const refused = await limiter.consume('slow', { ratePerSecond: 0.2, burst: 1 });
    expect(refused).toMatchObject({ allowed: false, retryAfterSeconds: 5 });
    if (!refused.allowed) expect(refused.retryAfterMs).toBeGreaterThan(4900);
  });

  it('tenants are independent, a rate of 0 touches nothing, and an idle tenant leaves no key', async () => {
    const limiter = new TenantRateLimiter(redis, PREFIX);
    const limits = { ratePerSecond: 20, burst: 2 }; // the key lives burst * T = 100 ms at most
    const decisions = await Promise.all(['a', 'a', 'a', 'b'].map((tenant) => limiter.consume(tenant, limits)));
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, false, true]);
    const ttl = await redis.pttl(tenantKeys(PREFIX).rate('a'));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(100);
    for (let i = 0; i < 5; i++) expect((await limiter.consume('c', { ratePerSecond: 0, burst: 1 })).allowed).toBe(true);
    expect(await redis.exists(tenantKeys(PREFIX).rate('c'))).toBe(0);
    await sleep(120);
    expect(await redis.exists(tenantKeys(PREFIX).rate('a'), tenantKeys(PREFIX).rate('b'))).toBe(0);
  });
});

describe('admission per tenant (RESERVE_LUA)', () => {
  const { keys, lists } = backlogKeys(PREFIX, ['generate']);
  const reserve = async (tenant: string, items: number, maxInFlight: number, shareCap = 0, limit = 100) => {
    const [code, backlog, , held] = (await redis.eval(
      RESERVE_LUA,
      keys.length,
      ...keys,
      items,
      limit,
      `tok${Math.random().toString(16).slice(2)}`,
      30_000,
      lists,
      tenant,
      tenantHex(tenant),
      maxInFlight,
      shareCap,
    )) as number[];
    return { code, backlog, held };
  };

  it("counts the tenant's in-flight items and its own reservations, not other tenants'", async () => {
    await redis.hset(tenantKeys(PREFIX).inflight, 'acme', 2, 'other', 50);
    expect(await reserve('acme', 1, 4)).toEqual({ code: 1, backlog: 0, held: 2 });
    expect(await reserve('acme', 1, 4)).toMatchObject({ code: 1, held: 3 });
    // 2 in flight + 2 reserved: a fifth item is over the limit of 4; the refusal reserves nothing.
    expect(await reserve('acme', 1, 4)).toMatchObject({ code: 2, held: 4 });
    expect(await redis.zcard(intakeKeys(PREFIX).reservations)).toBe(2);
    // Another tenant is counted on its own (its in-flight count is its own, acme's reservations are not).
    expect(await reserve('fresh', 3, 4)).toMatchObject({ code: 1, held: 0 });
    // The global count sees everyone's reservations: 2 + 3.
    expect(await reserve('fresh', 1, 0, 0, 5)).toMatchObject({ code: 0, backlog: 5 });
  });

  it('the backlog share is checked on the same count, and names with ":" cannot be confused', async () => {
    expect(await reserve('a:b', 2, 0, 3)).toMatchObject({ code: 1, held: 0 });
    // 'a' is a prefix of 'a:b' by name; hex-encoded, their members never match each other.
    expect(await reserve('a', 3, 0, 3)).toMatchObject({ code: 1, held: 0 });
    expect(await reserve('a:b', 2, 0, 3)).toMatchObject({ code: 3, held: 2 });
    const members = await redis.zrange(intakeKeys(PREFIX).reservations, 0, -1);
    expect(members.every((m) => /^[^:]+:[0-9a-f]*:\d+$/.test(m))).toBe(true);
    // A member written by an older intake (token:items) counts globally, for no tenant.
    await redis.zadd(intakeKeys(PREFIX).reservations, Date.now() + 60_000, 'legacy:7');
    expect(await reserve('a', 1, 0, 0, 12)).toMatchObject({ code: 0, backlog: 12, held: 3 });
  });

  it('the reservation member carries the tenant as hex', () => {
    expect(reservationMember('abc', 'a:b', 4)).toBe(`abc:${Buffer.from('a:b').toString('hex')}:4`);
    expect(reservationMember('abc', undefined, 4)).toBe('abc::4');
  });
});

describe('limits configuration', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tenant-limits-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('file entries override the settings field by field; others get the defaults', () => {
    const file = join(dir, 'limits.yaml');
    writeFileSync(file, 'tenants:\n  acme:\n    rate_per_second: 5\n    max_in_flight: 100\n  big:\n    max_backlog_share: 0.5\n    burst: 9\n');
    const catalog = tenantLimitsFromEnv({ TENANT_LIMITS_FILE: file, TENANT_RATE_PER_SECOND: '2', TENANT_MAX_IN_FLIGHT: '10' });
    expect(catalog.for('acme')).toEqual({ ratePerSecond: 5, burst: 5, maxInFlight: 100, maxBacklogShare: 1 });
    expect(catalog.for('big')).toEqual({ ratePerSecond: 2, burst: 9, maxInFlight: 10, maxBacklogShare: 0.5 });
    expect(catalog.for('anyone')).toEqual({ ratePerSecond: 2, burst: 2, maxInFlight: 10, maxBacklogShare: 1 });
    expect(new TenantLimitsCatalog().for('x')).toEqual({ ratePerSecond: 0, burst: 1, maxInFlight: 0, maxBacklogShare: 1 });
    expect(tenantLimitsFromEnv({ TENANT_RATE_PER_SECOND: '2.5', TENANT_RATE_BURST: '7' }).for('x')).toMatchObject({ ratePerSecond: 2.5, burst: 7 });
  });

  it('a bad file is refused with the tenant and the field named', () => {
    expect(() => parseTenantLimitsFile('{"tenants": {"acme": {"max_backlog_share": 2}}}', 'f.json')).toThrow(
      /TENANT_LIMITS_FILE f\.json: tenant "acme" field max_backlog_share: must be at most 1/,
    );
    expect(() => parseTenantLimitsFile('{"tenants": {"acme": {"burst": 0.5}, "b": {"rate": 1}}}', 'f.json')).toThrow(
      /tenant "acme" field burst: must be an integer.*tenant "b": unknown field\(s\) rate/,
    );
    expect(() => parseTenantLimitsFile('{"tenants": {"acme": {"rate_per_second": "fast"}}}', 'f.json')).toThrow(/tenant "acme" field rate_per_second/);
    expect(() => parseTenantLimitsFile('tenants: [1', 'f.yaml')).toThrow(/f\.yaml: not YAML or JSON/);
    expect(() => tenantLimitsFromEnv({ TENANT_LIMITS_FILE: join(dir, 'missing.json') })).toThrow(/TENANT_LIMITS_FILE .*missing\.json: cannot be read/);
  });

  it('the backlog share in items: floor of the share, at least one, none at 1', () => {
    expect(backlogShareCap({ maxBacklogShare: 1 }, 10_000)).toBe(0);
    expect(backlogShareCap({ maxBacklogShare: 0.25 }, 10)).toBe(2);
    expect(backlogShareCap({ maxBacklogShare: 0.0001 }, 10)).toBe(1);
  });
});
