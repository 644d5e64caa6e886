/**
 * The intake API against a real Redis with no workers running: every bad-input class gets its 4xx and leaves
 * nothing behind, idempotency, tenant isolation, pagination, backpressure, docs, probes, metrics, dashboard auth.
 */
import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { redisOptions } from '@libs/queue';
import { sha256Hex } from '@libs/storage';
import { startLocalPipeline, startPrivateRedis, type LocalPipeline } from './harness/local-pipeline';
import { createIntakeApp } from '../apps/intake-api/src/app';
import { client, form, noisyPng, queuedJobs, REDIS_URL, solidPng } from './support';

const OTHER_KEY = 'tenant-b-key';

function countFiles(dir: string): number {
  let n = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true } as never) as unknown as { isFile(): boolean }[]) if (entry.isFile()) n++;
  return n;
}

describe('intake API', () => {
  let p: LocalPipeline;
  let api: ReturnType<typeof client>;
  let png: Buffer;

  beforeAll(async () => {
    p = await startLocalPipeline({
      roles: ['intake'],
      quiet: true,
      tenants: { other: OTHER_KEY },
      env: {
        REDIS_URL,
        INTAKE_MAX_IMAGE_BYTES: String(200_000),
        INTAKE_MAX_IMAGE_PIXELS: String(1_000_000),
        INTAKE_MAX_PROMPT_CHARS: '200',
        INTAKE_MAX_ANSWER_CHARS: '300',
        INTAKE_MAX_BATCH_ITEMS: '6',
        INTAKE_MAX_REQUEST_BYTES: String(1_000_000),
        INTAKE_MAX_BACKLOG: '30',
      },
    });
    api = client(p.url, p.apiKey);
    png = await solidPng(64, 48);
  });

  afterAll(async () => {
    await p?.close();
  });

  const prefix = () => p.env.QUEUE_PREFIX!;

  describe('bad input is refused at the door and nothing is enqueued or stored', () => {
    const cases: [string, () => Promise<{ status: number; body: any; headers: Headers }>, number, string][] = [
      ['missing API key', () => client(p.url).post('/v1/jobs', { prompt: 'hi', answer: 'a' }), 401, 'unauthorized'],
      ['wrong API key', () => client(p.url, 'nope').post('/v1/jobs', { prompt: 'hi', answer: 'a' }), 401, 'unauthorized'],
      ['admin key cannot own jobs', () => client(p.url, p.adminKey).post('/v1/jobs', { prompt: 'hi', answer: 'a' }), 403, 'forbidden'],
      ['empty prompt', () => api.post('/v1/jobs', { prompt: '   ', answer: 'a' }), 400, 'prompt_empty'],
      ['missing prompt', () => api.post('/v1/jobs', { answer: 'a' }), 400, 'prompt_empty'],
      ['prompt too long', () => api.post('/v1/jobs', { prompt: 'x'.repeat(201) }), 400, 'prompt_too_long'],
      ['answer too long', () => api.post('/v1/jobs', { prompt: 'q', answer: 'y'.repeat(301) }), 400, 'answer_too_long'],
      ['metadata too large', () => api.post('/v1/jobs', { prompt: 'q', metadata: { blob: 'z'.repeat(5000) } }), 400, 'metadata_too_large'],
      ['unknown profile', () => api.post('/v1/jobs', { prompt: 'q', profile: 'jailbreak-steering' }), 422, 'unknown_profile'],
      ['invalid JSON', () => api.post('/v1/jobs', '{"prompt":', { 'content-type': 'application/json' }), 400, 'invalid_request'],
      ['invalid base64', () => api.post('/v1/jobs', { prompt: 'q', image: '***not base64***' }), 400, 'invalid_request'],
      ['unsupported media type', () => api.post('/v1/jobs', 'prompt=q', { 'content-type': 'text/plain' }), 415, 'unsupported_media_type'],
      [
        'image over the byte limit (base64)',
        // Just over the image limit: a body much larger than any job's is refused as request_too_large first.
        async () => api.post('/v1/jobs', { prompt: 'q', image: (await noisyPng(215_000)).toString('base64') }),
        413,
        'image_too_large',
      ],
      [
        'image over the byte limit (multipart)',
        async () => api.post('/v1/jobs', form({ prompt: 'q' }, { image: { bytes: await noisyPng(300_000) } })),
        413,
        'image_too_large',
      ],
      [
        'image over the pixel limit (decompression bomb)',
        async () => api.post('/v1/jobs', form({ prompt: 'q' }, { image: { bytes: await solidPng(2000, 1000) } })),
        413,
        'image_too_many_pixels',
      ],
      [
        'unsupported format (GIF)',
        async () => api.post('/v1/jobs', form({ prompt: 'q' }, { image: { bytes: await sharpGif(), type: 'image/gif' } })),
        415,
        'unsupported_image_format',
      ],
      [
        'not an image',
        () => api.post('/v1/jobs', form({ prompt: 'q' }, { image: { bytes: new TextEncoder().encode('hello world, not a picture') } })),
        415,
        'unsupported_image_format',
      ],
      [
        'truncated PNG',
        async () => api.post('/v1/jobs', form({ prompt: 'q' }, { image: { bytes: png.subarray(0, png.length - 30) } })),
        422,
        'image_undecodable',
      ],
      [
        'PNG with a corrupt header',
        async () => {
          const bad = Buffer.from(png);
          bad.fill(0x41, 12, 40);
          return api.post('/v1/jobs', form({ prompt: 'q' }, { image: { bytes: bad } }));
        },
        422,
        'image_undecodable',
      ],
      ['empty batch', () => api.post('/v1/batches', { items: [] }), 400, 'batch_empty'],
      [
        'too many batch items',
        () => api.post('/v1/batches', { items: Array.from({ length: 7 }, () => ({ prompt: 'q', answer: 'a' })) }),
        413,
        'batch_too_large',
      ],
      ['one bad item spoils the batch', () => api.post('/v1/batches', { items: [{ prompt: 'q', answer: 'a' }, { prompt: '' }] }), 400, 'prompt_empty'],
      ['request over the size limit', () => api.post('/v1/batches', { items: [{ prompt: 'q', answer: 'a'.repeat(1_100_000) }] }), 413, 'request_too_large'],
      [
        'multipart batch naming a file that was not sent',
        () => api.post('/v1/batches', form({ items: JSON.stringify([{ prompt: 'q', file: 'missing' }]) })),
        400,
        'image_missing',
      ],
    ];

    for (const [name, send, status, code] of cases) {
      it(`${name} -> ${status} ${code}`, async () => {
        const res = await send();
        expect(res.status, JSON.stringify(res.body)).toBe(status);
        expect(res.body.error.code).toBe(code);
        expect(typeof res.body.error.message).toBe('string');
      });
    }

    it('left no job, verdict or blob behind', async () => {
      expect(await queuedJobs(prefix())).toBe(0);
      const redis = new Redis(redisOptions(REDIS_URL));
      const [, keys] = await redis.scan('0', 'MATCH', `${prefix()}:verdict:*`, 'COUNT', 1000);
      redis.disconnect();
      expect(keys).toEqual([]);
      expect(countFiles(p.blobDir)).toBe(0);
    });
  });

  it('accepts a multipart job and a JSON job with a base64 image; the same image is stored once', async () => {
    const a = await api.post('/v1/jobs', form({ prompt: 'What machine is this?', metadata: '{"line":"A"}' }, { image: { bytes: png } }));
    expect(a.status).toBe(202);
    expect(a.body).toMatchObject({ status: 'queued', created: true, poll_url: `/v1/jobs/${a.body.id}` });
    const b = await api.post('/v1/jobs', { prompt: 'And this?', image: `data:image/png;base64,${png.toString('base64')}` });
    expect(b.status).toBe(202);
    const verdict = (await api.get(a.body.poll_url)).body;
    expect(verdict).toMatchObject({
      id: a.body.id,
      status: 'queued',
      image_sha256: sha256Hex(png),
      metadata: { line: 'A' },
      profile: 'default',
      policy: 'answer',
    });
    expect(countFiles(p.blobDir)).toBe(1);
    expect(await queuedJobs(prefix(), ['generate'])).toBe(2);
  });

  it('an evaluate-only job enters at the evaluate queue', async () => {
    const before = await queuedJobs(prefix(), ['evaluate']);
    const res = await api.post('/v1/jobs', { prompt: 'How do I clean the lathe?', answer: 'Switch it off first.' });
    expect(res.status).toBe(202);
    expect(await queuedJobs(prefix(), ['evaluate'])).toBe(before + 1);
    expect((await api.get(res.body.poll_url)).body.original_answer).toBe('Switch it off first.');
  });

  it('Idempotency-Key: same key and body give the same job; another body is a 409', async () => {
    const body = { prompt: 'Is the guard closed?', answer: 'Yes.' };
    const headers = { 'idempotency-key': 'order-4711' };
    const first = await api.post('/v1/jobs', body, headers);
    const again = await api.post('/v1/jobs', body, headers);
    expect(first.status).toBe(202);
    expect(again.status).toBe(202);
    expect(again.body.id).toBe(first.body.id);
    expect(again.body.created).toBe(false);
    const conflict = await api.post('/v1/jobs', { ...body, answer: 'No.' }, headers);
    expect(conflict.status).toBe(409);
    expect(conflict.body.error.code).toBe('idempotency_conflict');
    // Another tenant's identical key is its own namespace.
    const other = await client(p.url, OTHER_KEY).post('/v1/jobs', body, headers);
    expect(other.status).toBe(202);
    expect(other.body.id).not.toBe(first.body.id);

    const batch = { items: [{ prompt: 'a', answer: 'b' }] };
    const b1 = await api.post('/v1/batches', batch, { 'idempotency-key': 'batch-1' });
    const b2 = await api.post('/v1/batches', batch, { 'idempotency-key': 'batch-1' });
    expect(b2.body.id).toBe(b1.body.id);
    expect(b2.body.job_ids).toEqual(b1.body.job_ids);
    expect((await api.post('/v1/batches', { items: [{ prompt: 'a', answer: 'c' }] }, { 'idempotency-key': 'batch-1' })).status).toBe(409);
  });

  it('tenants see only their own jobs and batches; the admin key reads all', async () => {
    const job = await api.post('/v1/jobs', { prompt: 'mine', answer: 'x' });
    const batch = await api.post('/v1/batches', { items: [{ prompt: 'mine too', answer: 'y' }] });
    const other = client(p.url, OTHER_KEY);
    for (const path of [job.body.poll_url, batch.body.poll_url, batch.body.verdicts_url]) {
      const res = await other.get(path);
      expect(res.status, path).toBe(404);
      expect(res.body.error.code).toBe('not_found');
      expect((await api.get(path)).status, path).toBe(200);
      expect((await client(p.url, p.adminKey).get(path)).status, path).toBe(200);
    }
    expect((await api.get(`/v1/jobs/mod_${'0'.repeat(24)}`)).status).toBe(404);
    // Not an id at all: refused before any Redis call.
    expect((await api.get('/v1/jobs/mod_doesnotexist')).body.error.code).toBe('invalid_id');
  });

  it('batch verdicts are cursor-paginated in submission order; counts by status', async () => {
    const items = Array.from({ length: 5 }, (_, i) => ({ prompt: `question ${i}`, answer: `answer ${i}` }));
    const res = await api.post('/v1/batches', { items, metadata: { shift: 'night' } });
    expect(res.status).toBe(202);
    expect(res.body.items).toBe(5);
    const status = (await api.get(res.body.poll_url)).body;
    expect(status).toMatchObject({ total: 5, counts: { queued: 5, processing: 0, succeeded: 0, failed: 0 }, done: false, metadata: { shift: 'night' } });
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: any = (await api.get(`${res.body.verdicts_url}?limit=2${cursor ? `&cursor=${cursor}` : ''}`)).body;
      seen.push(...page.data.map((v: { prompt: string }) => v.prompt));
      cursor = page.next_cursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual(items.map((i) => i.prompt));
    expect((await api.get(`${res.body.verdicts_url}?cursor=%%%`)).status).toBe(400);
  });

  it('multipart batches pair files with items', async () => {
    const other = await solidPng(40, 40, [10, 200, 10]);
    const res = await api.post(
      '/v1/batches',
      form(
        {
          items: JSON.stringify([
            { prompt: 'first', file: 'one' },
            { prompt: 'second', file: 'two' },
            { prompt: 'text only', answer: 'ok' },
          ]),
        },
        { one: { bytes: png }, two: { bytes: other } },
      ),
    );
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const page = (await api.get(res.body.verdicts_url)).body;
    expect(page.data.map((v: { image_sha256: string | null }) => v.image_sha256)).toEqual([sha256Hex(png), sha256Hex(other), null]);
  });

  it('OpenAPI document, docs UI, probes, metrics and the admin-only queue dashboard', async () => {
    const doc = (await client(p.url).get('/openapi.json')).body;
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/v1/jobs', '/v1/jobs/{id}', '/v1/batches', '/v1/batches/{id}', '/v1/batches/{id}/verdicts', '/healthz', '/readyz']),
    );
    expect(doc.components.schemas.Verdict.properties).toHaveProperty('final_answer');
    expect(doc.components.schemas.JobSubmission.properties).toHaveProperty('prompt');
    expect((await client(p.url).get('/docs')).status).toBe(200);
    expect((await client(p.url).get('/healthz')).body).toEqual({ status: 'ok' });
    expect((await client(p.url).get('/readyz')).status).toBe(200);
    const metrics = (await client(p.url).get('/metrics')).body as string;
    expect(metrics).toMatch(/http_requests_total\{method="POST",route="\/v1\/jobs",status="202"\} \d+/);
    expect(metrics).toMatch(/moderation_queue_jobs\{queue="generate",state="wait"\} \d+/);
    expect(metrics).toMatch(/moderation_intake_rejected_total\{code="prompt_empty"\} \d+/);
    const anonymous = await client(p.url).get('/admin/queues');
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toContain('Basic');
    expect((await api.get('/admin/queues')).status).toBe(403);
    expect((await client(p.url, p.adminKey).get('/admin/queues')).status).toBe(200);
    const basic = `Basic ${Buffer.from(`admin:${p.adminKey}`).toString('base64')}`;
    expect((await client(p.url).get('/admin/queues/api/queues', { authorization: basic })).status).toBe(200);
  });

  it('refuses work with 429 and Retry-After once the backlog passes its limit', async () => {
    let res;
    for (let i = 0; i < 40; i++) {
      res = await api.post('/v1/jobs', { prompt: `fill ${i}`, answer: 'a' });
      if (res.status !== 202) break;
    }
    expect(res!.status).toBe(429);
    expect(res!.body.error.code).toBe('backlog_full');
    expect(Number(res!.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await queuedJobs(prefix())).toBeLessThanOrEqual(30);
  });
});

describe('readiness follows Redis', () => {
  it('/readyz answers 503 when Redis goes away, /healthz stays 200', async () => {
    const redis = await startPrivateRedis();
    const app = await createIntakeApp({
      env: { ...process.env, REDIS_URL: redis.url, QUEUE_PREFIX: '{readyz}', BLOB_DIR: '/tmp/readyz-blobs' },
      logger: false,
    });
    try {
      await app.listen(0, '127.0.0.1');
      const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
      expect((await client(url).get('/readyz')).status).toBe(200);
      await redis.stop();
      expect((await client(url).get('/readyz')).status).toBe(503);
      expect((await client(url).get('/healthz')).status).toBe(200);
    } finally {
      await Promise.race([app.close(), new Promise((r) => setTimeout(r, 3000))]);
      await redis.stop();
    }
  });
});

async function sharpGif(): Promise<Buffer> {
  const { default: sharp } = await import('sharp');
  return sharp({ create: { width: 8, height: 8, channels: 3, background: '#336699' } })
    .gif()
    .toBuffer();
}
