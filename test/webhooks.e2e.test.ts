/**
 * Webhooks end to end (issue 14 item 1): the intake, the evaluator (tiny packs; jobs carry an answer, so no VLM)
 * and the notifier role in this process against a real Redis, delivering to a real HTTP receiver on 127.0.0.1
 * (allowed by WEBHOOK_ALLOWED_TARGETS). Registration and its refusals, signatures (the library's verify and the
 * snippet of docs/deploy.md), retries after 500s and a timeout with the same webhook-id, per-batch callbacks,
 * the give-up into the dead-letter state, its admin list and replay, and a relay crash between enqueue and ack.
 */
import * as crypto from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WebhookEvent } from '@libs/contracts';
import { redisOptions, webhookKeys } from '@libs/queue';
import { VERDICT_STORE, type VerdictStore } from '@libs/storage';
import {
  deliveryJobOptions,
  EndpointRegistry,
  OutboxRelay,
  parseOutboxEntry,
  RELAY_GROUP,
  retrySchedule,
  verifyWebhook,
  WEBHOOK_QUEUE,
  type RawEntry,
} from '@libs/webhooks';
import { startLocalPipeline, type LocalPipeline } from './harness/local-pipeline';
import { client, form, REDIS_URL, TINY_PACKS_ENV, waitFor } from './support';

const ROOT = join(__dirname, '..');

/** The verification snippet exactly as docs/deploy.md shows it (between its markers), as a function. */
function documentedVerify(): (secret: string, headers: Record<string, string>, body: string) => boolean {
  const doc = readFileSync(join(ROOT, 'docs', 'deploy.md'), 'utf8');
  const match = /<!-- webhook-verify:start -->\s*```js\n([\s\S]*?)```\s*<!-- webhook-verify:end -->/.exec(doc);
  if (!match) throw new Error('docs/deploy.md has no webhook verification snippet between its markers');
  const require = (name: string) => {
    if (name !== 'node:crypto') throw new Error(`the snippet should need node:crypto only, not ${name}`);
    return crypto;
  };
  return new Function('require', `${match[1]}\nreturn verifyWebhook;`)(require);
}

interface Delivery {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  answered: string;
}

type Answer = 'ok' | 'fail' | 'hang';

/** A receiver on 127.0.0.1: per path a script of answers (then `ok`), or a fixed answer. */
class Receiver {
  readonly deliveries: Delivery[] = [];
  private readonly scripts = new Map<string, Answer[]>();
  private readonly fixed = new Map<string, Answer>();
  private server!: Server;
  port = 0;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const path = req.url ?? '';
        const answer = this.fixed.get(path) ?? this.scripts.get(path)?.shift() ?? 'ok';
        this.deliveries.push({ path, headers: req.headers, body, answered: answer });
        if (answer === 'ok') res.writeHead(200, { 'content-type': 'text/plain' }).end('thanks');
        else if (answer === 'fail') res.writeHead(500).end('down');
        // 'hang': no answer; the notifier's timeout gives up on the connection.
      });
    });
    await new Promise<void>((done) => this.server.listen(0, '127.0.0.1', done));
    this.port = (this.server.address() as AddressInfo).port;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  script(path: string, answers: Answer[]): void {
    this.scripts.set(path, [...answers]);
  }

  always(path: string, answer: Answer | undefined): void {
    if (answer) this.fixed.set(path, answer);
    else this.fixed.delete(path);
  }

  at(path: string): Delivery[] {
    return this.deliveries.filter((d) => d.path === path);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((done) => this.server.close(() => done()));
  }
}

const KEYS = { flaky: 'flaky-key', hang: 'hang-key', cb: 'cb-key', dead: 'dead-key', dup: 'dup-key', many: 'many-key', filed: 'filed-key' };
const FILED_SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;

describe('webhooks', () => {
  const receiver = new Receiver();
  let p: LocalPipeline;
  let redis: Redis;
  let dir: string;
  const secrets: Record<string, string> = {};
  const api = (tenant: keyof typeof KEYS) => client(p.url, KEYS[tenant]);
  const admin = () => client(p.url, p.adminKey);
  const submit = async (tenant: keyof typeof KEYS, extra: Record<string, unknown> = {}) => {
    const res = await api(tenant).post('/v1/jobs', { prompt: 'Is this lathe guarded?', answer: 'Yes, the chuck guard is closed.', ...extra });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return res.body.id as string;
  };
  const register = async (tenant: keyof typeof KEYS, path: string, events?: string[]) => {
    const res = await api(tenant).post('/v1/webhooks', { url: receiver.url(path), ...(events ? { events } : {}) });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    secrets[tenant] = res.body.secret;
    return res.body as { id: string; secret: string; url: string; events: string[]; read_only: boolean };
  };
  const eventOf = (d: Delivery, tenant: keyof typeof KEYS) => verifyWebhook(secrets[tenant], d.headers as Record<string, string>, d.body) as WebhookEvent;

  beforeAll(async () => {
    await receiver.start();
    dir = mkdtempSync(join(tmpdir(), 'webhooks-e2e-'));
    const file = join(dir, 'webhooks.json');
    writeFileSync(file, JSON.stringify({ tenants: { filed: [{ url: receiver.url('/t/filed/hook'), secret: FILED_SECRET, events: ['verdict.completed'] }] } }));
    secrets.filed = FILED_SECRET;
    p = await startLocalPipeline({
      quiet: true,
      roles: ['intake', 'evaluator', 'notifier'],
      tenants: KEYS,
      env: {
        REDIS_URL,
        ...TINY_PACKS_ENV,
        WEBHOOK_ALLOWED_TARGETS: '127.0.0.1',
        WEBHOOK_CONFIG_FILE: file,
        // Small so retries, timeouts and the give-up fit a test: waits 100, 200, 400, 800 ms (5 attempts).
        WEBHOOK_BACKOFF_MS: '100',
        WEBHOOK_GIVE_UP_SECONDS: '1.5',
        WEBHOOK_TIMEOUT_MS: '500',
        WEBHOOK_MAX_ENDPOINTS: '3',
      },
    });
    redis = new Redis(redisOptions(REDIS_URL));
  }, 120_000);

  afterAll(async () => {
    await p?.close();
    await redis?.quit();
    await receiver.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('registration: 201 with the secret once, listed without it; the file endpoint read-only; bad URLs refused', async () => {
    const created = await register('flaky', '/t/flaky/hook');
    expect(created).toMatchObject({ id: expect.stringMatching(/^whk_[0-9a-f]{24}$/), url: receiver.url('/t/flaky/hook'), read_only: false });
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(created.events).toEqual(['verdict.completed', 'verdict.failed', 'batch.completed']);
    const listed = await api('flaky').get('/v1/webhooks');
    expect(listed.status).toBe(200);
    expect(listed.body.data).toEqual([{ id: created.id, url: created.url, events: created.events, created_at: expect.any(String), read_only: false }]);
    expect(JSON.stringify(listed.body)).not.toContain('whsec_');

    const filed = (await api('filed').get('/v1/webhooks')).body.data;
    expect(filed).toEqual([
      { id: expect.stringMatching(/^whk_/), url: receiver.url('/t/filed/hook'), events: ['verdict.completed'], created_at: null, read_only: true },
    ]);
    expect((await api('filed').delete(`/v1/webhooks/${filed[0].id}`)).body.error.code).toBe('forbidden');

    const { subscribed } = webhookKeys(p.env.QUEUE_PREFIX!);
    expect((await redis.smembers(subscribed)).sort()).toEqual(['filed', 'flaky']);

    const refusals: [unknown, number, string][] = [
      [{ url: 'https://10.0.0.1/hook' }, 422, 'webhook_target_forbidden'],
      [{ url: 'https://169.254.169.254/latest/meta-data/' }, 422, 'webhook_target_forbidden'],
      [{ url: 'https://[::1]/hook' }, 422, 'webhook_target_forbidden'],
      [{ url: 'https://localhost/hook' }, 422, 'webhook_target_forbidden'],
      [{ url: 'http://hooks.example.com/plain' }, 400, 'invalid_webhook_url'],
      [{ url: 'https://user:pw@hooks.example.com/' }, 400, 'invalid_webhook_url'],
      [{ url: 'ftp://hooks.example.com/' }, 400, 'invalid_webhook_url'],
      [{ url: `https://hooks.example.com/${'x'.repeat(2100)}` }, 400, 'invalid_webhook_url'],
      [{}, 400, 'invalid_webhook_url'],
      [{ url: 'https://hooks.example.com/', colour: 'red' }, 400, 'unknown_field'],
      [{ url: 'https://hooks.example.com/', events: ['verdict.maybe'] }, 400, 'invalid_request'],
      [{ url: 'https://hooks.example.com/', events: [] }, 400, 'invalid_request'],
    ];
    for (const [body, status, code] of refusals) {
      const res = await api('flaky').post('/v1/webhooks', body);
      expect([res.status, res.body.error?.code], JSON.stringify(body).slice(0, 80)).toEqual([status, code]);
    }
    expect((await admin().post('/v1/webhooks', { url: 'https://hooks.example.com/' })).body.error.code).toBe('forbidden');
    expect((await client(p.url).get('/v1/webhooks')).status).toBe(401);
  });

  it('a verdict answered 500 twice, then 200: delivered on the third attempt, one webhook-id, every signature valid (the documented snippet too)', async () => {
    receiver.script('/t/flaky/hook', ['fail', 'fail']);
    const id = await submit('flaky');
    const got = await waitFor('three attempts', async () => receiver.at('/t/flaky/hook').length >= 3 && receiver.at('/t/flaky/hook'), 30_000);
    expect(got.map((d) => d.answered)).toEqual(['fail', 'fail', 'ok']);
    const ids = new Set(got.map((d) => d.headers['webhook-id']));
    expect(ids.size).toBe(1);
    const verify = documentedVerify();
    for (const d of got) {
      expect(verify(secrets.flaky, d.headers as Record<string, string>, d.body)).toBe(true);
      expect(verify(secrets.flaky, d.headers as Record<string, string>, d.body.replace('succeeded', 'failed'))).toBe(false);
      expect(d.headers['content-type']).toBe('application/json');
    }
    const event = eventOf(got[2], 'flaky');
    const verdict = (await api('flaky').get(`/v1/jobs/${id}`)).body;
    expect(event).toEqual({
      id: [...ids][0],
      type: 'verdict.completed',
      created_at: expect.any(String),
      data: { id, tenant: 'flaky', batch_id: null, status: 'succeeded', decision: verdict.decision, poll_url: `/v1/jobs/${id}` },
    });
    expect(verdict.status).toBe('succeeded');
    // The event names the job; it never carries its text.
    expect(got[2].body).not.toContain('lathe');
    expect(got[2].body).not.toContain('chuck');
    // Delivered: no fourth attempt.
    await new Promise((r) => setTimeout(r, 600));
    expect(receiver.at('/t/flaky/hook')).toHaveLength(3);
  });

  it('a callback_url equal to an endpoint URL is delivered once, not twice; one of another origin is 422, a malformed one 400', async () => {
    const before = receiver.at('/t/flaky/hook').length;
    await submit('flaky', { callback_url: receiver.url('/t/flaky/hook') });
    await waitFor('the delivery', async () => receiver.at('/t/flaky/hook').length > before, 30_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(receiver.at('/t/flaky/hook').length).toBe(before + 1);

    const refused: [unknown, number, string][] = [
      ['https://elsewhere.example.com/hook', 422, 'callback_not_registered'],
      [`http://127.0.0.1:${receiver.port + 1}/t/flaky/hook`, 422, 'callback_not_registered'],
      ['https://10.1.1.1/hook', 422, 'webhook_target_forbidden'],
      ['not a url', 400, 'invalid_webhook_url'],
      [42, 400, 'invalid_webhook_url'],
    ];
    for (const [callback_url, status, code] of refused) {
      const job = await api('flaky').post('/v1/jobs', { prompt: 'q', answer: 'a', callback_url });
      expect([job.status, job.body.error?.code], String(callback_url)).toEqual([status, code]);
      const batch = await api('flaky').post('/v1/batches', { items: [{ prompt: 'q', answer: 'a' }], callback_url });
      expect([batch.status, batch.body.error?.code], String(callback_url)).toEqual([status, code]);
    }
    // Multipart bodies take callback_url as a field, checked the same way.
    const multipartJob = await api('flaky').post('/v1/jobs', form({ prompt: 'q', answer: 'a', callback_url: 'https://elsewhere.example.com/hook' }));
    expect([multipartJob.status, multipartJob.body.error?.code]).toEqual([422, 'callback_not_registered']);
    const multipartBatch = await api('flaky').post('/v1/batches', form({ items: JSON.stringify([{ prompt: 'q', answer: 'a' }]), callback_url: 'nope' }));
    expect([multipartBatch.status, multipartBatch.body.error?.code]).toEqual([400, 'invalid_webhook_url']);
    const accepted = await api('flaky').post('/v1/jobs', form({ prompt: 'q', answer: 'a', callback_url: receiver.url('/t/flaky/form') }));
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(202);
    const [viaForm] = await waitFor('the multipart callback', async () => receiver.at('/t/flaky/form').length >= 1 && receiver.at('/t/flaky/form'), 30_000);
    expect(eventOf(viaForm, 'flaky').data.id).toBe(accepted.body.id);
    // A tenant without endpoints has no origin to match at all.
    expect((await api('dup').post('/v1/jobs', { prompt: 'q', answer: 'a', callback_url: receiver.url('/t/flaky/hook') })).body.error.code).toBe(
      'callback_not_registered',
    );
    // callback_url belongs to the batch, not to its items.
    const item = await api('flaky').post('/v1/batches', { items: [{ prompt: 'q', answer: 'a', callback_url: receiver.url('/t/flaky/hook') }] });
    expect(item.body.error).toMatchObject({ code: 'unknown_field', details: { field: 'callback_url' } });
  });

  it('a receiver that hangs past the timeout is retried: both attempts carry the same webhook-id and body', async () => {
    await register('hang', '/t/hang/hook');
    receiver.script('/t/hang/hook', ['hang']);
    await submit('hang');
    const got = await waitFor('the retry', async () => receiver.at('/t/hang/hook').length >= 2 && receiver.at('/t/hang/hook'), 30_000);
    expect(got.map((d) => d.answered)).toEqual(['hang', 'ok']);
    expect(got[0].headers['webhook-id']).toBe(got[1].headers['webhook-id']);
    expect(got[0].body).toBe(got[1].body);
    // Each attempt is signed at its own time.
    for (const d of got) expect(eventOf(d, 'hang').type).toBe('verdict.completed');
  });

  it("a batch's callback_url gets its verdict events and batch.completed, signed with the endpoint's secret", async () => {
    await register('cb', '/t/cb/endpoint', ['batch.completed']);
    const res = await api('cb').post('/v1/batches', {
      items: [
        { prompt: 'What is this?', answer: 'A drill press.' },
        { prompt: 'And this?', answer: 'A bench grinder.' },
      ],
      callback_url: receiver.url('/t/cb/callback?batch=1'),
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const batchId = res.body.id as string;
    const callback = await waitFor(
      'three callback events',
      async () => receiver.at('/t/cb/callback?batch=1').length >= 3 && receiver.at('/t/cb/callback?batch=1'),
      30_000,
    );
    const events = callback.map((d) => eventOf(d, 'cb'));
    expect(events.map((e) => e.type).sort()).toEqual(['batch.completed', 'verdict.completed', 'verdict.completed']);
    expect(
      events
        .filter((e) => e.type === 'verdict.completed')
        .map((e) => e.data.id)
        .sort(),
    ).toEqual([...res.body.job_ids].sort());
    expect(events.every((e) => e.data.batch_id === batchId)).toBe(true);
    expect(events.find((e) => e.type === 'batch.completed')!.data).toEqual({
      id: batchId,
      tenant: 'cb',
      batch_id: batchId,
      status: 'completed',
      poll_url: `/v1/batches/${batchId}`,
    });
    // The endpoint itself subscribed to batch.completed only.
    const endpoint = await waitFor('the endpoint event', async () => receiver.at('/t/cb/endpoint').length >= 1 && receiver.at('/t/cb/endpoint'), 30_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(receiver.at('/t/cb/endpoint').map((d) => eventOf(d, 'cb').type)).toEqual(['batch.completed']);
    // Same event, two targets: the same webhook-id at both.
    expect(endpoint[0].headers['webhook-id']).toBe(callback.find((d) => eventOf(d, 'cb').type === 'batch.completed')!.headers['webhook-id']);
  });

  it('the file endpoint gets its events, signed with the secret of the file', async () => {
    const id = await submit('filed');
    const [d] = await waitFor('the file endpoint', async () => receiver.at('/t/filed/hook').length >= 1 && receiver.at('/t/filed/hook'), 30_000);
    expect(eventOf(d, 'filed').data.id).toBe(id);
  });

  it('gives up after the window into the dead-letter state: listed by the admin, replayed, delivered with the same webhook-id', async () => {
    await register('dead', '/t/dead/hook');
    receiver.always('/t/dead/hook', 'fail');
    const jobId = await submit('dead');
    const listed = await waitFor(
      'the dead letter',
      async () => {
        const page = await admin().get('/admin/webhooks/dead-letter');
        return page.body.data?.find((x: any) => x.tenant === 'dead');
      },
      30_000,
      200,
    );
    const attempts = receiver.at('/t/dead/hook');
    expect(attempts.length).toBe(5);
    expect(new Set(attempts.map((d) => d.headers['webhook-id'])).size).toBe(1);
    expect(listed).toEqual({
      id: expect.stringMatching(/^evt_\d+-\d+_whk_[0-9a-f]{24}$/),
      event_id: attempts[0].headers['webhook-id'],
      event_type: 'verdict.completed',
      tenant: 'dead',
      url: receiver.url('/t/dead/hook'),
      attempts: 5,
      last_error: 'HTTP 500',
      failed_at: expect.any(String),
    });
    // The retries spanned the window: 100 + 200 + 400 + 800 ms of waits at least.
    expect(Date.parse(listed.failed_at) - Date.parse(eventOf(attempts[0], 'dead').created_at)).toBeGreaterThanOrEqual(1500);
    expect(eventOf(attempts[0], 'dead').data.id).toBe(jobId);
    // Admin only.
    expect((await api('dead').get('/admin/webhooks/dead-letter')).status).toBe(403);
    expect((await client(p.url).get('/admin/webhooks/dead-letter')).status).toBe(401);
    expect((await admin().get('/admin/webhooks/dead-letter?limit=0')).body.error.code).toBe('invalid_request');

    receiver.always('/t/dead/hook', undefined);
    const replay = await admin().post(`/admin/webhooks/dead-letter/${listed.id}/replay`);
    expect(replay.status, JSON.stringify(replay.body)).toBe(202);
    expect(replay.body).toEqual({ id: listed.id, status: 'queued' });
    const delivered = await waitFor('the replayed delivery', async () => receiver.at('/t/dead/hook').find((d) => d.answered === 'ok'), 30_000);
    expect(delivered.headers['webhook-id']).toBe(listed.event_id);
    expect(eventOf(delivered, 'dead').data.id).toBe(jobId);
    await waitFor('off the dead-letter list', async () => !(await admin().get('/admin/webhooks/dead-letter')).body.data.some((x: any) => x.id === listed.id));
    // Not dead any more: a second replay finds nothing; a malformed id is refused before Redis.
    expect((await admin().post(`/admin/webhooks/dead-letter/${listed.id}/replay`)).body.error.code).toBe('not_found');
    expect((await admin().post('/admin/webhooks/dead-letter/bogus:id/replay')).body.error.code).toBe('invalid_id');
    expect((await api('dead').post(`/admin/webhooks/dead-letter/${listed.id}/replay`)).status).toBe(403);
  });

  it('a relay that read an entry and died before acknowledging it: another claims it, and the redelivery has the same webhook-id and body', async () => {
    const endpoint = await register('dup', '/t/dup/hook');
    const app = p.apps.notifier!;
    const live = app.get(OutboxRelay);
    // The live relay stands aside so the entry below is the crashed one's.
    await live.stop();
    const prefix = p.env.QUEUE_PREFIX!;
    const { outbox } = webhookKeys(prefix);
    const queue = app.get<Queue>(WEBHOOK_QUEUE, { strict: false });
    try {
      await submit('dup');
      const [entry] = await waitFor(
        'the outbox entry',
        async () => {
          const read = (await (redis as any).xreadgroup('GROUP', RELAY_GROUP, 'crashed', 'COUNT', 10, 'STREAMS', outbox, '>')) as [string, RawEntry[]][] | null;
          return read?.[0]?.[1].length ? read[0][1] : undefined;
        },
        30_000,
      );
      // The crashed relay got as far as enqueueing the deliveries, not as far as XACK.
      await live.enqueue(parseOutboxEntry(entry)!);
      const [first] = await waitFor('the first delivery', async () => receiver.at('/t/dup/hook').length >= 1 && receiver.at('/t/dup/hook'), 30_000);
      // The completed job's retention passes (BullMQ would otherwise keep the id and add nothing).
      const jobId = `${first.headers['webhook-id']}_${endpoint.id}`;
      await waitFor('the job completed', async () => (await queue.getJobState(jobId)) === 'completed');
      await queue.clean(0, 1000, 'completed');

      const rescuer = new OutboxRelay(
        new Redis(redisOptions(REDIS_URL)),
        prefix,
        app.get(EndpointRegistry),
        app.get<VerdictStore>(VERDICT_STORE, { strict: false }),
        queue,
        deliveryJobOptions(retrySchedule(100, 1500), 60),
        { consumer: 'rescuer', claimIdleMs: 50 },
      );
      await new Promise((r) => setTimeout(r, 100));
      expect(await rescuer.pollOnce()).toBe(1);
      const got = await waitFor('the redelivery', async () => receiver.at('/t/dup/hook').length >= 2 && receiver.at('/t/dup/hook'), 30_000);
      expect(got[1].headers['webhook-id']).toBe(got[0].headers['webhook-id']);
      expect(got[1].body).toBe(got[0].body);
      const pending = (await redis.xpending(outbox, RELAY_GROUP)) as [number, ...unknown[]];
      expect(pending[0]).toBe(0);
      await (rescuer as any).redis.quit();
    } finally {
      live.start();
    }
  });

  it('endpoints: at most WEBHOOK_MAX_ENDPOINTS per tenant; delete 204, then 404; another tenant cannot; the last one unsubscribes', async () => {
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await register('many', `/t/many/${i}`)).id);
    const over = await api('many').post('/v1/webhooks', { url: receiver.url('/t/many/3') });
    expect([over.status, over.body.error.code, over.body.error.details]).toEqual([409, 'too_many_webhooks', { limit: 3 }]);
    const { subscribed } = webhookKeys(p.env.QUEUE_PREFIX!);
    expect(await redis.sismember(subscribed, 'many')).toBe(1);
    expect((await api('flaky').delete(`/v1/webhooks/${ids[0]}`)).status).toBe(404);
    expect((await api('many').delete('/v1/webhooks/whk_nope')).body.error.code).toBe('invalid_id');
    for (const id of ids) {
      const res = await api('many').delete(`/v1/webhooks/${id}`);
      expect(res.status).toBe(204);
      expect(res.body).toBe('');
    }
    expect((await api('many').delete(`/v1/webhooks/${ids[0]}`)).status).toBe(404);
    expect((await api('many').get('/v1/webhooks')).body.data).toEqual([]);
    expect(await redis.sismember(subscribed, 'many')).toBe(0);
  });
});
