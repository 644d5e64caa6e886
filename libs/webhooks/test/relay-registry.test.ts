/**
 * EndpointRegistry and OutboxRelay against a real Redis under their own prefix: the `subscribed` set holds exactly
 * the tenants with an endpoint (the file's included, stale ones pruned at start-up), the per-tenant limit, and the
 * relay's jobs per target and event type, its acknowledgements and its trimming of the outbox.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModerationError } from '@libs/contracts';
import { deleteKeys, redisOptions, webhookKeys } from '@libs/queue';
import { VerdictStore } from '@libs/storage';
import {
  deliveryJobOptions,
  EndpointRegistry,
  generateSecret,
  OutboxRelay,
  RELAY_GROUP,
  TargetGuard,
  WEBHOOK_QUEUE_NAME,
  type DeliveryJobData,
} from '@libs/webhooks';

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const PREFIX = `{webhooktest${process.pid}}`;

describe('EndpointRegistry and OutboxRelay', () => {
  let redis: Redis;
  let queue: Queue<DeliveryJobData>;
  const keys = webhookKeys(PREFIX);
  const guard = new TargetGuard();
  const configured = new Map([['filed', [{ url: 'https://hooks.filed.example/in', secret: generateSecret(), events: ['verdict.completed' as const] }]]]);

  beforeAll(async () => {
    redis = new Redis(redisOptions(REDIS_URL));
    queue = new Queue(WEBHOOK_QUEUE_NAME, { connection: redisOptions(REDIS_URL), prefix: PREFIX });
  });
  afterAll(async () => {
    await queue.close();
    await redis.quit();
    await deleteKeys(REDIS_URL, PREFIX);
  });

  it('lists endpoints in the order they were registered, also those registered within one millisecond', async () => {
    // The list was sorted by created_at (milliseconds), then by the random id: same-millisecond registrations came
    // back in random order (this suite's other test failed about one run in three).
    const registry = new EndpointRegistry(redis, PREFIX, guard, new Map(), 40);
    const urls = Array.from({ length: 40 }, (_, i) => `https://hooks.order.example/${i}`);
    for (const url of urls) await registry.add('order', url);
    const listed = await registry.list('order');
    expect(listed.map((e) => e.url)).toEqual(urls);
    // The order is kept inside the registry: the API's endpoint objects carry no extra field.
    expect(Object.keys(listed[0]).sort()).toEqual(['created_at', 'events', 'id', 'read_only', 'secret', 'tenant', 'url']);
    expect(Object.keys((await registry.get('order', listed[3].id))!).sort()).toEqual(Object.keys(listed[0]).sort());
    for (const e of listed) await registry.remove('order', e.id);
  });

  it('subscribed: exactly the tenants with an endpoint; the file counts towards the limit; stale members are pruned at start-up', async () => {
    const registry = new EndpointRegistry(redis, PREFIX, guard, configured, 2);
    await redis.sadd(keys.subscribed, 'ghost');
    await registry.syncSubscriptions();
    expect((await redis.smembers(keys.subscribed)).sort()).toEqual(['filed']);

    const a = await registry.add('acme', 'https://hooks.acme.example/a');
    await registry.add('acme', 'https://hooks.acme.example/b', ['verdict.failed']);
    expect((await redis.smembers(keys.subscribed)).sort()).toEqual(['acme', 'filed']);
    const over = await registry.add('acme', 'https://hooks.acme.example/c').catch((e) => e);
    expect(over).toBeInstanceOf(ModerationError);
    expect(over.code).toBe('too_many_webhooks');
    // The file's endpoint takes one of the tenant's two places.
    await registry.add('filed', 'https://hooks.filed.example/api');
    expect((await registry.add('filed', 'https://hooks.filed.example/api2').catch((e) => e)).code).toBe('too_many_webhooks');

    expect((await registry.list('acme')).map((e) => e.url)).toEqual(['https://hooks.acme.example/a', 'https://hooks.acme.example/b']);
    expect(await registry.remove('acme', a.id)).toBe(true);
    expect(await registry.remove('acme', a.id)).toBe(false);
    expect(await redis.sismember(keys.subscribed, 'acme')).toBe(1);
    const b = (await registry.list('acme'))[0];
    expect(await registry.remove('other', b.id)).toBe(false);
    expect(await registry.remove('acme', b.id)).toBe(true);
    expect(await redis.sismember(keys.subscribed, 'acme')).toBe(0);
    // A tenant of the file stays subscribed without API endpoints.
    const api = (await registry.list('filed')).find((e) => !e.read_only)!;
    expect(await registry.remove('filed', api.id)).toBe(true);
    expect(await redis.sismember(keys.subscribed, 'filed')).toBe(1);
    // The file's tenant is pruned by a replica whose file no longer has it.
    await new EndpointRegistry(redis, PREFIX, guard, new Map()).syncSubscriptions();
    expect(await redis.sismember(keys.subscribed, 'filed')).toBe(0);
  });

  it('the relay: one job per subscribed endpoint and type, stable ids, everything acknowledged, the stream trimmed below what is pending', async () => {
    const registry = new EndpointRegistry(redis, PREFIX, guard);
    const all = await registry.add('relay', 'https://hooks.relay.example/all');
    const failedOnly = await registry.add('relay', 'https://hooks.relay.example/failed', ['verdict.failed']);
    const verdicts = new VerdictStore(redis, PREFIX);
    const relay = new OutboxRelay(new Redis(redisOptions(REDIS_URL)), PREFIX, registry, verdicts, queue, deliveryJobOptions([100], 60), { consumer: 'one' });
    await relay.ensureGroup();
    const add = (type: string, id: string, batch = '') =>
      redis.xadd(keys.outbox, '*', 'type', type, 'id', id, 'tenant', 'relay', 'batch', batch, 'callback', '', 'at', Date.now());
    const s1 = await add('verdict.completed', 'mod_a');
    const s2 = await add('verdict.failed', 'mod_b');
    const s3 = await add('batch.completed', 'bat_c', 'bat_c');
    expect(await relay.pollOnce()).toBe(3);

    const jobs = (await queue.getJobs(['wait', 'delayed', 'prioritized'])).map((j) => j.id).sort();
    expect(jobs).toEqual([`evt_${s1}_${all.id}`, `evt_${s2}_${all.id}`, `evt_${s2}_${failedOnly.id}`, `evt_${s3}_${all.id}`].sort());
    const failed = await queue.getJob(`evt_${s2}_${failedOnly.id}`);
    // No verdict in the store: the type still says failed, and nothing is made up.
    expect(failed!.data.event).toEqual({
      id: `evt_${s2}`,
      type: 'verdict.failed',
      created_at: expect.any(String),
      data: { id: 'mod_b', tenant: 'relay', batch_id: null, status: 'failed', decision: null, poll_url: '/v1/jobs/mod_b' },
    });
    expect(failed!.opts.attempts).toBe(2);
    expect((await redis.xpending(keys.outbox, RELAY_GROUP))[0]).toBe(0);

    // Handled again (a crash before XACK): the same ids, so nothing new.
    await relay.enqueue({ streamId: s1!, type: 'verdict.completed', id: 'mod_a', tenant: 'relay', batch: '', callback: '', at: String(Date.now()) });
    expect((await queue.getJobs(['wait', 'delayed', 'prioritized'])).length).toBe(4);

    // An entry another consumer holds stays; everything acknowledged before it goes.
    const s4 = await add('verdict.completed', 'mod_d');
    await (redis as any).xreadgroup('GROUP', RELAY_GROUP, 'other', 'COUNT', 1, 'STREAMS', keys.outbox, '>');
    const s5 = await add('verdict.completed', 'mod_e');
    expect(await relay.pollOnce()).toBe(1);
    await relay.trim();
    const left = ((await redis.xrange(keys.outbox, '-', '+')) as [string, string[]][]).map(([id]) => id);
    expect(left).toEqual([s4, s5]);
    await (relay as any).redis.quit();
  });
});
