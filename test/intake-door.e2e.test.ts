/**
 * "The door holds" (issue 9): the admin surfaces are authorised on the route a request is matched to (encoded and
 * odd paths cannot slip past), client input never gives a 500, long and deep input is refused before anything walks
 * it, and every error body, fastify's own included, has the `{ error: { code, message } }` shape.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { redisOptions } from '@libs/queue';
import { startLocalPipeline, type LocalPipeline } from './harness/local-pipeline';
import { jsonDepthExceeds } from '../apps/intake-api/src/json-depth';
import { codePointsOver, isInvisible } from '../apps/intake-api/src/text-checks';
import { intakeBodyLimits } from '../apps/intake-api/src/body-limits';
import { DEFAULT_LIMITS } from '@libs/contracts';
import { client, form, queuedJobs, REDIS_URL, solidPng } from './support';

const OTHER_KEY = 'door-tenant-b-key';
const SECRET_PROMPT = 'tenant A secret prompt 7f3a';

/** A raw HTTP exchange, for requests fetch would refuse to send (malformed request lines, huge headers). */
function rawHttp(url: string, request: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(request));
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk) => (data += chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0);
      resolve({ status, body: data.slice(data.indexOf('\r\n\r\n') + 4) });
    });
    setTimeout(() => socket.destroy(), 5000).unref();
  });
}

/** fetch keeps percent-escapes and `//` as written; `new URL` would not normalise them either. */
async function send(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: string) {
  const res = await fetch(`${base}${path}`, { method, headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers }, body });
  const text = await res.text();
  let parsed: any = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* text */
  }
  return { status: res.status, text, body: parsed };
}

/** `{"a":{"a":...1}}` as text: JSON.stringify itself overflows the stack a few thousand levels down. */
function deep(depth: number): string {
  return '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
}

function nested(depth: number, leaf: unknown = 1): unknown {
  let value: unknown = leaf;
  for (let i = 0; i < depth; i++) value = { a: value };
  return value;
}

describe('the door holds', () => {
  let p: LocalPipeline;
  let api: ReturnType<typeof client>;
  let png: Buffer;
  let batchId: string;
  let jobId: string;

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
        INTAKE_MAX_BACKLOG: '1000',
      },
    });
    api = client(p.url, p.apiKey);
    png = await solidPng(32, 32);
    const job = await api.post('/v1/jobs', { prompt: SECRET_PROMPT, answer: 'a' });
    expect(job.status).toBe(202);
    jobId = job.body.id;
    const batch = await api.post('/v1/batches', { items: [{ prompt: SECRET_PROMPT, answer: 'b' }] });
    expect(batch.status).toBe(202);
    batchId = batch.body.id;
  });

  afterAll(async () => {
    await p?.close();
  });

  describe('(1) the queue dashboard answers only the admin key, however the path is spelled', () => {
    const reads = [
      '/admin/queues',
      '/admin/queues/',
      '/admin/queues/api/queues',
      '/admin/queues/api/queues/',
      '/admin/queues/api/queues?x=1',
      '/%61dmin/queues/api/queues',
      '/%61dmin/queues/api/queues?activeQueue=evaluate&status=latest&page=1&jobsPerPage=50',
      '/admin/%71ueues/api/queues',
      '/%61%64%6d%69%6e/%71%75%65%75%65%73/api/queues',
      '/%41dmin/queues/api/queues',
      '/%2561dmin/queues/api/queues',
      '/admin/queues/%61pi/queues',
      '/admin/queues/api/%71ueues',
      '/admin/queues%2Fapi%2Fqueues',
      '/ADMIN/QUEUES/api/queues',
      '/Admin/Queues/api/queues',
      '//admin/queues/api/queues',
      '/admin//queues/api/queues',
      '/admin/queues//api/queues',
      '/./admin/queues/api/queues',
      '/v1/../admin/queues/api/queues',
      '/%61dmin/queues',
      '/%61dmin/queues/',
      '/admin/queues/static/main.js',
    ];
    for (const path of reads) {
      it(`GET ${path}: 401/403/404 without the admin key, never the prompts`, async () => {
        for (const headers of [{}, { authorization: `Bearer ${p.apiKey}` }, { 'x-api-key': OTHER_KEY }] as Record<string, string>[]) {
          const res = await send(p.url, 'GET', path, headers);
          expect([401, 403, 404], `${path} ${JSON.stringify(headers)}: ${res.status} ${res.text.slice(0, 200)}`).toContain(res.status);
          expect(res.text).not.toContain(SECRET_PROMPT);
          expect(typeof res.body.error?.code, res.text.slice(0, 200)).toBe('string');
        }
      });
    }

    const writes: [string, string][] = [
      ['PUT', '/%61dmin/queues/api/queues/generate/pause'],
      ['PUT', '/admin/%71ueues/api/queues/generate/pause'],
      ['PUT', '/%61dmin/queues/api/queues/pause'],
      ['PUT', '//admin/queues/api/queues/generate/pause'],
      ['PUT', '/admin/queues/api/queues/generate/pause/'],
      ['PUT', '/%61dmin/queues/api/queues/evaluate/empty'],
      ['PUT', '/%61dmin/queues/api/queues/evaluate/obliterate'],
      ['POST', '/%61dmin/queues/api/queues/evaluate/add'],
      ['PUT', '/admin/queues/api/queues/evaluate/empty'],
    ];
    it('state-changing dashboard calls are refused and change nothing', async () => {
      const before = await queuedJobs(p.env.QUEUE_PREFIX!);
      expect(before).toBeGreaterThan(0);
      for (const [method, path] of writes) {
        const body = method === 'POST' ? JSON.stringify({ name: 'x', data: { prompt: 'injected' } }) : undefined;
        for (const headers of [{}, { authorization: `Bearer ${p.apiKey}` }] as Record<string, string>[]) {
          const res = await send(p.url, method, path, headers, body);
          expect([401, 403, 404], `${method} ${path}: ${res.status} ${res.text.slice(0, 200)}`).toContain(res.status);
        }
      }
      for (const stage of ['generate', 'evaluate', 'align']) {
        const queue = new Queue(stage, { connection: redisOptions(REDIS_URL), prefix: p.env.QUEUE_PREFIX });
        expect(await queue.isPaused(), stage).toBe(false);
        await queue.close();
      }
      expect(await queuedJobs(p.env.QUEUE_PREFIX!)).toBe(before);
    });

    it('the dashboard still works with the admin key (Bearer and Basic), and a browser is asked for Basic auth', async () => {
      const admin = { authorization: `Bearer ${p.adminKey}` };
      const page = await send(p.url, 'GET', '/admin/queues', admin);
      expect(page.status).toBe(200);
      const queues = await send(p.url, 'GET', '/admin/queues/api/queues?activeQueue=evaluate&status=latest&page=1&jobsPerPage=50', admin);
      expect(queues.status).toBe(200);
      expect(queues.text).toContain(SECRET_PROMPT);
      const encoded = await send(p.url, 'GET', '/%61dmin/queues/api/queues', admin);
      expect(encoded.status).toBe(200);
      const basic = { authorization: `Basic ${Buffer.from(`admin:${p.adminKey}`).toString('base64')}` };
      expect((await send(p.url, 'GET', '/admin/queues/api/queues', basic)).status).toBe(200);
      const anonymous = await send(p.url, 'GET', '/%61dmin/queues');
      expect(anonymous.status).toBe(401);
      expect(anonymous.body.error.code).toBe('unauthorized');
    });
  });

  describe('(3) client input that used to give 500', () => {
    it('ids are checked against their form before any Redis call: invalid_id', async () => {
      for (const path of [
        `/v1/batches/${batchId}:items`,
        `/v1/batches/${batchId}:items/verdicts`,
        `/v1/batches/${batchId}:verdicts`,
        `/v1/batches/${jobId}`,
        `/v1/jobs/${jobId}:x`,
        `/v1/jobs/${batchId}`,
        '/v1/jobs/mod_doesnotexist',
        '/v1/jobs/*',
      ]) {
        const res = await api.get(path);
        expect(res.status, `${path}: ${JSON.stringify(res.body)}`).toBe(400);
        expect(res.body.error.code).toBe('invalid_id');
      }
      // Well-formed ids that do not exist are still 404; real ones read.
      expect((await api.get(`/v1/jobs/mod_${'0'.repeat(24)}`)).body.error.code).toBe('not_found');
      expect((await api.get(`/v1/batches/bat_${'0'.repeat(24)}/verdicts`)).body.error.code).toBe('not_found');
      expect((await api.get(`/v1/jobs/${jobId}`)).status).toBe(200);
      expect((await api.get(`/v1/batches/${batchId}`)).status).toBe(200);
      expect((await api.get(`/v1/batches/${batchId}/verdicts`)).status).toBe(200);
    });

    it('multipart/form-data without a boundary is a 400', async () => {
      for (const type of ['multipart/form-data', 'multipart/form-data; boundary=', 'multipart/form-data; charset=utf-8']) {
        for (const path of ['/v1/jobs', '/v1/batches']) {
          const res = await api.post(path, 'prompt=x', { 'content-type': type });
          expect(res.status, `${path} ${type}: ${JSON.stringify(res.body)}`).toBe(400);
          expect(res.body.error.code).toBe('invalid_request');
        }
      }
    });

    it('JSON deeper than the limit is refused with json_too_deep, in bodies and in multipart fields', async () => {
      const deepMeta = `{"prompt":"q","answer":"a","metadata":${deep(5000)}}`;
      const cases: [string, unknown, Record<string, string>?][] = [
        ['/v1/jobs', deepMeta],
        ['/v1/jobs', JSON.stringify({ prompt: 'q', answer: 'a', metadata: nested(32) })],
        ['/v1/batches', '['.repeat(100_000) + ']'.repeat(100_000)],
        ['/v1/batches', JSON.stringify({ items: [{ prompt: 'q', answer: 'a', metadata: nested(40) }] })],
        ['/v1/batches', `{"items":[{"prompt":"q","answer":"a"}],"metadata":${deep(5000)}}`],
        ['/v1/jobs', '{"prompt":"q","x":' + '['.repeat(50) + ']'.repeat(50) + '}'],
        ['/v1/jobs', form({ prompt: 'q', answer: 'a', metadata: deep(5000) })],
        ['/v1/batches', form({ items: `[{"prompt":"q","answer":"a","metadata":${deep(5000)}}]` })],
        ['/v1/batches', form({ items: JSON.stringify([{ prompt: 'q', answer: 'a' }]), metadata: JSON.stringify(nested(100)) })],
      ];
      for (const [path, body] of cases) {
        const res = await api.post(path, body as never, typeof body === 'string' ? { 'content-type': 'application/json' } : {});
        expect(res.status, `${path}: ${JSON.stringify(res.body).slice(0, 300)}`).toBe(400);
        expect(res.body.error.code).toBe('json_too_deep');
      }
      // Brackets inside strings are text, not depth; depth at the limit is accepted.
      const ok = await api.post('/v1/jobs', { prompt: '[[[[{{{{'.repeat(20), answer: 'a', metadata: nested(30) });
      expect(ok.status, JSON.stringify(ok.body)).toBe(202);
    });

    it('jsonDepthExceeds counts containers outside strings, escapes included', () => {
      expect(jsonDepthExceeds('{}', 1)).toBe(false);
      expect(jsonDepthExceeds('[[]]', 1)).toBe(true);
      expect(jsonDepthExceeds('[[]]', 2)).toBe(false);
      expect(jsonDepthExceeds('"[[[[[\\"[[["', 1)).toBe(false);
      expect(jsonDepthExceeds('{"a":"\\\\"}', 1)).toBe(false);
      expect(jsonDepthExceeds('{"a":"\\\\",' + '"b":[[]]}', 2)).toBe(true);
      expect(jsonDepthExceeds('[1,[2],[3,[4]]]', 3)).toBe(false);
      expect(jsonDepthExceeds('[1,[2],[3,[4]]]', 2)).toBe(true);
      expect(jsonDepthExceeds('['.repeat(1_000_000), 32)).toBe(true);
    });
  });

  describe('(4) long prompts are refused by size before any per-character work', () => {
    it('the JSON body limit follows from the item limits, not a flat 64 MiB', async () => {
      const limits = intakeBodyLimits(DEFAULT_LIMITS);
      expect(limits.job).toBeLessThan(16 * 1024 * 1024);
      expect(limits.job).toBeGreaterThan(Math.ceil(DEFAULT_LIMITS.maxImageBytes / 3) * 4);
      expect(limits.batch).toBeLessThanOrEqual(DEFAULT_LIMITS.maxRequestBytes);
      const started = Date.now();
      const res = await api.post('/v1/jobs', { prompt: 'x'.repeat(3_000_000) });
      expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBe(413);
      expect(res.body.error.code).toBe('request_too_large');
      expect(Date.now() - started).toBeLessThan(3000);
    });

    it('a chunked body (no Content-Length) is held to the same limit while it streams', async () => {
      const chunk = new TextEncoder().encode('x'.repeat(64 * 1024));
      let sent = 0;
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('{"prompt":"'));
        },
        pull(controller) {
          // 64 MiB at most; the server must stop reading long before.
          if ((sent += chunk.length) > 64 * 1024 * 1024) controller.close();
          else controller.enqueue(chunk);
        },
      });
      const res = await fetch(`${p.url}/v1/jobs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${p.apiKey}`, 'content-type': 'application/json' },
        body: stream,
        duplex: 'half',
      } as RequestInit).catch((err: Error) => err);
      // The server may cut the connection once it has answered; either way it stopped reading early.
      if (res instanceof Error) {
        expect(sent).toBeLessThan(16 * 1024 * 1024);
        return;
      }
      expect(res.status).toBe(413);
      expect(((await res.json()) as any).error.code).toBe('request_too_large');
      expect(sent).toBeLessThan(16 * 1024 * 1024);
    });

    it("prototype poisoning in a JSON body is still refused (fastify's own parser runs after the depth check)", async () => {
      const res = await api.post('/v1/jobs', '{"prompt":"q","answer":"a","__proto__":{"admin":true}}', { 'content-type': 'application/json' });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    });

    it('a long prompt inside an allowed body is refused with prompt_too_long; code points are counted, not UTF-16 units', async () => {
      const long = await api.post('/v1/batches', { items: [{ prompt: 'y'.repeat(400_000) }] });
      expect(long.status, JSON.stringify(long.body).slice(0, 300)).toBe(400);
      expect(long.body.error.code).toBe('prompt_too_long');
      const emoji = '\u{1F600}';
      expect((await api.post('/v1/jobs', { prompt: emoji.repeat(200), answer: 'a' })).status).toBe(202);
      expect((await api.post('/v1/jobs', { prompt: emoji.repeat(201), answer: 'a' })).body.error.code).toBe('prompt_too_long');
      expect((await api.post('/v1/jobs', { prompt: 'q', answer: emoji.repeat(301) })).body.error.code).toBe('answer_too_long');
      expect(codePointsOver(emoji.repeat(10), 10)).toBe(false);
      expect(codePointsOver(emoji.repeat(10) + 'a', 10)).toBe(true);
      expect(codePointsOver('a'.repeat(21), 10)).toBe(true);
      expect(codePointsOver('', 0)).toBe(false);
    });

    it('a multipart prompt field is held to the prompt limit, not the request limit', async () => {
      const res = await api.post('/v1/jobs', form({ prompt: 'z'.repeat(400_000) }));
      expect([400, 413], JSON.stringify(res.body).slice(0, 300)).toContain(res.status);
      expect(['prompt_too_long', 'request_too_large']).toContain(res.body.error.code);
    });
  });

  describe('(13) every error has the shape and the right code', () => {
    it('a bad percent-escape in the URL', async () => {
      const res = await send(p.url, 'GET', '/v1/jobs/%E0%A4%A', { authorization: `Bearer ${p.apiKey}` });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
      expect(typeof res.body.error.message).toBe('string');
    });

    it('a path parameter over the maximum length', async () => {
      const res = await send(p.url, 'GET', `/v1/jobs/mod_${'a'.repeat(500)}`, { authorization: `Bearer ${p.apiKey}` });
      expect([400, 404, 414]).toContain(res.status);
      expect(typeof res.body.error?.code, res.text).toBe('string');
    });

    it('an unknown route', async () => {
      const res = await send(p.url, 'GET', '/v2/nothing-here');
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('not_found');
    });

    it('malformed HTTP and oversized headers', async () => {
      const bad = await rawHttp(p.url, 'GET /healthz HTTP/1.1\r\nHost: x\r\nThis is not a header\r\n\r\n');
      expect(bad.status).toBe(400);
      expect(JSON.parse(bad.body).error.code).toBe('invalid_request');
      const big = await rawHttp(p.url, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`);
      expect(big.status).toBe(431);
      expect(JSON.parse(big.body).error.code).toBe('headers_too_large');
    });

    it('three files (or two) to /v1/jobs name the right limit: too_many_files', async () => {
      for (const n of [2, 3]) {
        const f = form({ prompt: 'q' });
        for (let i = 0; i < n; i++) f.append(`image${i}`, new Blob([png], { type: 'image/png' }), `${i}.png`);
        const res = await api.post('/v1/jobs', f);
        expect(res.status, JSON.stringify(res.body)).toBe(400);
        expect(res.body.error.code).toBe('too_many_files');
        expect(res.body.error.message).toMatch(/one image/);
      }
      // A batch takes one file per item at most.
      const f = form({ items: JSON.stringify([{ prompt: 'q' }]) });
      for (let i = 0; i < 7; i++) f.append(`image${i}`, new Blob([png], { type: 'image/png' }), `${i}.png`);
      const res = await api.post('/v1/batches', f);
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.error.code).toBe('too_many_files');
    });

    it('Basic auth without a colon is refused', async () => {
      const noColon = { authorization: `Basic ${Buffer.from(p.apiKey).toString('base64')}` };
      const res = await client(p.url).get(`/v1/jobs/${jobId}`, noColon);
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('unauthorized');
      const adminNoColon = { authorization: `Basic ${Buffer.from(p.adminKey).toString('base64')}` };
      expect((await send(p.url, 'GET', '/admin/queues/api/queues', adminNoColon)).status).toBe(401);
      const withColon = { authorization: `Basic ${Buffer.from(`x:${p.apiKey}`).toString('base64')}` };
      expect((await client(p.url).get(`/v1/jobs/${jobId}`, withColon)).status).toBe(200);
    });

    it('invisible prompts and lone surrogates have their own codes', async () => {
      for (const prompt of ['\u200b', '\u200b\u200c\u200d\u2060\ufeff', '\u0000\u0007\u001b', ' \u200b \t\u00ad', '\u2800\u3164']) {
        const res = await api.post('/v1/jobs', { prompt, answer: 'a' });
        expect(res.status, JSON.stringify(prompt)).toBe(400);
        expect(res.body.error.code, JSON.stringify(prompt)).toBe('prompt_invisible');
      }
      expect((await api.post('/v1/jobs', { prompt: '   ', answer: 'a' })).body.error.code).toBe('prompt_empty');
      for (const body of [
        { prompt: 'ab\ud800', answer: 'a' },
        { prompt: '\udc00x', answer: 'a' },
        { prompt: 'q', answer: 'x\udfffy' },
      ]) {
        const res = await api.post('/v1/jobs', body);
        expect(res.status, JSON.stringify(body)).toBe(400);
        expect(res.body.error.code).toBe('text_invalid_unicode');
      }
      const batch = await api.post('/v1/batches', {
        items: [
          { prompt: 'ok', answer: 'a' },
          { prompt: 'q', answer: '\ud83d' },
        ],
      });
      expect(batch.body.error).toMatchObject({ code: 'text_invalid_unicode', details: { item: 1 } });
      expect(isInvisible('a\u200b')).toBe(false);
      expect(isInvisible('\u{1F600}')).toBe(false);
      expect((await api.post('/v1/jobs', { prompt: 'Is the \u{1F6A7} guard closed?\u200b', answer: 'a' })).status).toBe(202);
    });

    it("a batch's images are checked several at a time, and the error still names the first bad item", async () => {
      // Item 2 fails in the decoder (a PNG signature on garbage), item 3 fails at once (no known format): checked
      // concurrently, 3 fails first, and the client must still hear about item 2, as a one-by-one check told it.
      const garbage = Buffer.concat([png.subarray(0, 33), Buffer.alloc(4000, 0x5a)]);
      const items = Array.from({ length: 6 }, (_, i) => ({
        prompt: `Is guard ${i} closed?`,
        image: (i === 2 ? garbage : i === 3 ? Buffer.from('GIF87a not really an image') : png).toString('base64'),
      }));
      const res = await api.post('/v1/batches', { items });
      expect(res.status, JSON.stringify(res.body)).toBe(422);
      expect(res.body.error).toMatchObject({ code: 'image_undecodable', details: { item: 2 } });
      const good = await api.post('/v1/batches', { items: items.map((it, i) => (i === 2 || i === 3 ? { ...it, image: png.toString('base64') } : it)) });
      expect(good.status, JSON.stringify(good.body)).toBe(202);
      expect(good.body.items).toBe(6);
    });

    it('multipart text that is not UTF-8, and lone surrogates in metadata, are text_invalid_unicode', async () => {
      // Bytes no UTF-8 decoder accepts: a UTF-8-encoded lone surrogate (ED A0 80) and a stray continuation byte.
      for (const bad of [Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0x80])]) {
        const boundary = 'door-boundary-7f3a';
        const body = Buffer.concat([
          Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nIs the guard `),
          bad,
          Buffer.from(` closed?\r\n--${boundary}\r\nContent-Disposition: form-data; name="answer"\r\n\r\nyes\r\n--${boundary}--\r\n`),
        ]);
        const res = await fetch(`${p.url}/v1/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${p.apiKey}`, 'content-type': `multipart/form-data; boundary=${boundary}` },
          body,
        });
        const json = (await res.json()) as { error: { code: string } };
        expect(res.status, bad.toString('hex')).toBe(400);
        expect(json.error.code).toBe('text_invalid_unicode');
      }
      for (const metadata of [{ note: 'a\ud800' }, { deep: [{ '\udc00key': 1 }] }]) {
        const res = await api.post('/v1/jobs', { prompt: 'q', answer: 'a', metadata });
        expect(res.status, JSON.stringify(metadata)).toBe(400);
        expect(res.body.error).toMatchObject({ code: 'text_invalid_unicode', details: { field: 'metadata' } });
      }
    });

    it('/metrics is public by default', async () => {
      expect((await client(p.url).get('/metrics')).status).toBe(200);
    });
  });
});

describe('METRICS_AUTH=admin puts /metrics behind the admin key', () => {
  let p: LocalPipeline;
  beforeAll(async () => {
    p = await startLocalPipeline({ roles: ['intake'], quiet: true, env: { REDIS_URL, METRICS_AUTH: 'admin' } });
  });
  afterAll(async () => {
    await p?.close();
  });

  it('401 without a key, 403 with a tenant key, 200 with the admin key; odd spellings too', async () => {
    const anonymous = await client(p.url).get('/metrics');
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error.code).toBe('unauthorized');
    expect((await client(p.url, p.apiKey).get('/metrics')).status).toBe(403);
    for (const path of ['/%6detrics', '/metrics/', '//metrics', '/metrics?x=1']) {
      const res = await send(p.url, 'GET', path);
      expect([401, 404], path).toContain(res.status);
    }
    const admin = await client(p.url, p.adminKey).get('/metrics');
    expect(admin.status).toBe(200);
    expect(admin.body).toMatch(/http_requests_total/);
  });
});
