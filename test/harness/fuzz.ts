/**
 * Fuzz harness shared by `npm run bench -- fuzz` and test/fuzz.e2e.test.ts: hostile requests over loopback
 * against the intake API started as its own child process (apps/intake-api/src/main.ts; no workers, so whatever
 * it enqueues stays in the queues), across every route and body type. Reports status counts per request class,
 * 5xx by class, latencies (max, and responses over 2 s by class), the intake's peak RSS (VmHWM) and what got
 * enqueued: every job in the queues and every verdict in the store must belong to a 202 answered; anything else
 * was enqueued although refused.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import type { Stage } from '@libs/contracts';
import { deleteKeys, freePort, redisOptions, verdictKeys } from '@libs/queue';
import { seededRandom } from '@libs/vlm';
import { peakRssBytes, spawnRole } from './processes';

export interface FuzzRequest {
  kind: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Requests with the same group run at the same time (concurrent duplicates). */
  group?: string;
  /** A request that must never be accepted (2xx on a submission); the report lists those that were, by variant. */
  refuse?: string;
}

export interface FuzzOptions {
  requests: number;
  concurrency: number;
  maxSeconds: number;
  /** How many tens-of-MB prompts (each is sent whole over loopback). */
  hugeCount: number;
  redisUrl: string;
  seed: number;
  log: (line: string) => void;
}

export const FUZZ_DEFAULTS: FuzzOptions = {
  requests: 10_000,
  concurrency: 16,
  maxSeconds: 600,
  hugeCount: 6,
  redisUrl: process.env.REDIS_URL || 'redis://127.0.0.1:6379',
  seed: 1,
  log: (line) => console.log(line),
};

export interface FuzzReport {
  sent: number;
  byStatus: Record<string, number>;
  byKind: Record<string, Record<string, number>>;
  fiveXx: Record<string, number>;
  /** 5xx examples: kind, method, path (cut), status, body (cut). */
  fiveXxSamples: string[];
  /** Hostile submissions that were accepted (202), by variant. */
  acceptedHostile: Record<string, number>;
  /** Admin paths answered 2xx/3xx without a key. */
  adminOpen: string[];
  slow: Record<string, number>;
  maxLatencyMs: number;
  maxLatencyKind: string;
  transportErrors: Record<string, number>;
  peakRssBytes?: number;
  accepted202: number;
  acceptedIds: number;
  enqueuedJobs: number;
  verdicts: number;
  /** Queue jobs or verdicts whose id no 202 answered. */
  enqueuedRefused: string[];
  seconds: number;
  intakeExit?: string;
}

function multipart(parts: { name: string; filename?: string; type?: string; data: Buffer | string }[], boundary = `----fuzz${randomBytes(8).toString('hex')}`) {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    chunks.push(
      Buffer.from(
        `--${boundary}\r\ncontent-disposition: form-data; name="${p.name}"${p.filename ? `; filename="${p.filename}"` : ''}\r\n${p.type ? `content-type: ${p.type}\r\n` : ''}\r\n`,
      ),
    );
    chunks.push(Buffer.isBuffer(p.data) ? p.data : Buffer.from(p.data));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), type: `multipart/form-data; boundary=${boundary}` };
}

async function images() {
  const png = await sharp({ create: { width: 48, height: 48, channels: 3, background: { r: 200, g: 30, b: 30 } } })
    .png()
    .toBuffer();
  const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 20, g: 90, b: 200 } } })
    .jpeg()
    .toBuffer();
  const wide = await sharp({ create: { width: 100_000, height: 1, channels: 3, background: { r: 1, g: 2, b: 3 } } })
    .png()
    .toBuffer();
  const tall = await sharp({ create: { width: 1, height: 100_000, channels: 3, background: { r: 1, g: 2, b: 3 } } })
    .png()
    .toBuffer();
  const noisy = await sharp(randomBytes(96 * 96 * 3), { raw: { width: 96, height: 96, channels: 3 } })
    .png()
    .toBuffer();
  const noisyJpeg = await sharp(randomBytes(96 * 96 * 3), { raw: { width: 96, height: 96, channels: 3 } })
    .jpeg()
    .toBuffer();
  return {
    png,
    jpeg,
    wide,
    tall,
    truncPng: noisy.subarray(0, Math.floor(noisy.length / 2)),
    truncJpeg: noisyJpeg.subarray(0, Math.floor(noisyJpeg.length / 2)),
  };
}

/** Classes where no request may be accepted. */
const MUST_REFUSE: Record<string, string> = {
  'multipart-no-boundary': 'multipart without a usable boundary',
  'deep-metadata': 'JSON nested 1,000+ deep',
  'png-100000x1': '100000x1 PNG',
  'truncated-image': 'truncated or non-image file',
  'three-files': 'three files to /v1/jobs',
  'basic-no-colon': 'Basic auth without a colon / bad Basic',
  'huge-prompt': 'prompt of tens of MB',
  'random-bytes': 'random bytes',
};

/** The request mix. Weights decide each class's share of the count; huge bodies are capped by `hugeCount`. */
async function buildRequests(o: FuzzOptions, keys: { api: string; admin: string }): Promise<FuzzRequest[]> {
  const rnd = seededRandom(o.seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
  const img = await images();
  const bearer = { authorization: `Bearer ${keys.api}` };
  const json = (v: unknown) => JSON.stringify(v);
  const jsonReq = (kind: string, path: string, body: string | Buffer, extra: Record<string, string> = {}): FuzzRequest => ({
    kind,
    method: 'POST',
    path,
    headers: { ...bearer, 'content-type': 'application/json', ...extra },
    body,
  });
  const id = () => `mod_${randomBytes(12).toString('hex')}`;
  const batchId = () => `bat_${randomBytes(12).toString('hex')}`;

  const adminPaths = [
    '/admin/queues',
    '/admin/queues/',
    '//admin/queues',
    '///admin/queues/',
    '/ADMIN/queues',
    '/Admin/Queues',
    '/admin/QUEUES/',
    '/%61dmin/queues',
    '/%41DMIN/queues',
    '/%2561dmin/queues',
    '/admin%2fqueues',
    '/admin%2Fqueues/',
    '/admin/queues%2F',
    '/admin/%71ueues',
    '/admin/queues/api/queues',
    '/admin/queues/api/queues?activeQueue=generate',
    '//admin//queues/api/queues',
    '/admin/queues/api/redis/stats',
    '/./admin/queues',
    '/v1/../admin/queues',
    '/admin/queues/..;/',
    '/admin;/queues',
    '/admin/queues;x',
    '/admin/queues/static/../api/queues',
    '/%2e/admin/queues',
    '/admin/queues/api/queues/generate/retry/failed',
    '/admin/queues/%2e%2e/api/queues',
    '/admin/queues?x=1',
    '/ADMIN/QUEUES/API/QUEUES',
    '/admin/queues/api/queues/generate/clean/completed',
  ];
  const adminAuth: Record<string, string>[] = [
    {},
    { authorization: 'Basic ' + Buffer.from('nocolon').toString('base64') },
    { authorization: 'Basic ' + Buffer.from(keys.api).toString('base64') },
    { authorization: 'Basic ' + Buffer.from(`:${keys.api}`).toString('base64') },
    { authorization: 'Basic %%%' },
    { authorization: 'Basic' },
    { authorization: 'Bearer ' },
    { authorization: `Bearer ${keys.api}` },
    { authorization: 'bearer admin' },
    { authorization: 'Basic ' + Buffer.from(keys.admin).toString('base64') },
  ];

  const classes: { kind: string; weight: number; make: () => FuzzRequest | FuzzRequest[] }[] = [
    {
      kind: 'valid-job',
      weight: 6,
      make: () =>
        pick([
          jsonReq('valid-job', '/v1/jobs', json({ prompt: `What machine is this? ${rnd()}`, image: img.png.toString('base64') })),
          jsonReq('valid-job', '/v1/jobs', json({ prompt: `Is it safe? ${rnd()}`, answer: 'Yes, with the guard closed.' })),
          (() => {
            const m = multipart([
              { name: 'prompt', data: `multipart ${rnd()}` },
              { name: 'image', filename: 'a.jpg', type: 'image/jpeg', data: img.jpeg },
            ]);
            return { kind: 'valid-job', method: 'POST', path: '/v1/jobs', headers: { ...bearer, 'content-type': m.type }, body: m.body };
          })(),
          jsonReq('valid-job', '/v1/batches', json({ items: [{ prompt: `a ${rnd()}` }, { prompt: 'b', image: img.png.toString('base64') }] })),
        ]),
    },
    {
      kind: 'admin-no-key',
      weight: 8,
      make: () => ({ kind: 'admin-no-key', method: pick(['GET', 'GET', 'PUT', 'POST', 'DELETE', 'HEAD']), path: pick(adminPaths), headers: pick(adminAuth) }),
    },
    {
      kind: 'id-probe',
      weight: 6,
      make: () => {
        const ids = [
          `${batchId()}:items`,
          `${batchId()}:counts`,
          `${id()}:items`,
          '*',
          '{mod}',
          '%7Bmod%7D:verdict:x',
          '..%2f..%2fhealthz',
          'a'.repeat(20_000),
          `${id()}%00`,
          'mod_' + 'ü'.repeat(300),
          '%F0%9F%92%A9',
          ' ',
          '%20',
          `${batchId()}_0:items`,
        ];
        const base = pick(['/v1/jobs/', '/v1/batches/', '/v1/batches/']);
        const suffix = base === '/v1/batches/' ? pick(['', '/verdicts', '/verdicts?limit=5']) : '';
        return { kind: 'id-probe', method: 'GET', path: base + pick(ids) + suffix, headers: bearer };
      },
    },
    {
      kind: 'multipart-no-boundary',
      weight: 4,
      make: () => {
        const m = multipart([{ name: 'prompt', data: 'hi' }]);
        return {
          kind: 'multipart-no-boundary',
          method: 'POST',
          path: pick(['/v1/jobs', '/v1/batches']),
          headers: {
            ...bearer,
            'content-type': pick([
              'multipart/form-data',
              'multipart/form-data; boundary=',
              'multipart/form-data; boundary="',
              'multipart/form-data; boundary=nope',
              'multipart/mixed',
            ]),
          },
          body: pick([m.body, Buffer.alloc(0), randomBytes(200)]),
        };
      },
    },
    {
      kind: 'deep-metadata',
      weight: 2,
      make: () => {
        const depth = pick([1000, 5000, 5000, 20000]);
        const obj = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
        const arr = '['.repeat(depth) + ']'.repeat(depth);
        return pick([
          jsonReq('deep-metadata', '/v1/jobs', `{"prompt":"x","metadata":${obj}}`),
          jsonReq('deep-metadata', '/v1/batches', `{"items":[{"prompt":"x"}],"metadata":${arr}}`),
          jsonReq('deep-metadata', '/v1/jobs', `{"prompt":${arr}}`),
          (() => {
            const m = multipart([
              { name: 'prompt', data: 'x' },
              { name: 'metadata', data: obj },
            ]);
            return { kind: 'deep-metadata', method: 'POST', path: '/v1/jobs', headers: { ...bearer, 'content-type': m.type }, body: m.body };
          })(),
        ]);
      },
    },
    {
      kind: 'invisible-text',
      weight: 4,
      make: () => {
        const prompts = [
          '\u200b'.repeat(50),
          '\u200b\u200c\u200d\u2060\ufeff',
          '\\ud800',
          '\\udfff\\ud800',
          'ok \\ud83d',
          '\u202e\u202d',
          '\u0000',
          ' \t\n ',
          '\u00ad'.repeat(10),
        ];
        const p = pick(prompts);
        if (rnd() < 0.3) {
          const m = multipart([{ name: 'prompt', data: Buffer.concat([Buffer.from('bad utf8 '), Buffer.from([0xed, 0xa0, 0x80, 0xff, 0xfe, 0xc0])]) }]);
          return {
            kind: 'invisible-text',
            method: 'POST',
            path: '/v1/jobs',
            headers: { ...bearer, 'content-type': m.type },
            body: m.body,
            refuse: 'invalid UTF-8 in a multipart prompt',
          };
        }
        const lone = /\\ud[89a-f]/.test(p) && !/\\ud83d$/.test(p) ? 'lone surrogate' : /\\ud83d$/.test(p) ? 'lone high surrogate at the end' : undefined;
        const blank = !/[a-z]/i.test(p.replace(/\\u[0-9a-f]{4}/gi, '')) ? 'prompt of invisible/blank chars only' : undefined;
        return pick([
          { ...jsonReq('invisible-text', '/v1/jobs', `{"prompt":"${p}"}`), refuse: lone ?? blank },
          { ...jsonReq('invisible-text', '/v1/jobs', `{"prompt":"valid","answer":"${p}"}`), refuse: lone && `${lone} in the answer` },
          {
            ...jsonReq('invisible-text', '/v1/batches', `{"items":[{"prompt":"fine"},{"prompt":"${p}"}]}`),
            refuse: (lone ?? blank) && `batch item: ${lone ?? blank}`,
          },
          { ...jsonReq('invisible-text', '/v1/jobs', `{"prompt":"x","metadata":{"${p}":"${p}"}}`), refuse: lone && `${lone} in metadata` },
        ]);
      },
    },
    {
      kind: 'png-100000x1',
      weight: 2,
      make: () => {
        const im = pick([img.wide, img.tall]);
        if (rnd() < 0.5) return jsonReq('png-100000x1', '/v1/jobs', json({ prompt: 'wide', image: im.toString('base64') }));
        const m = multipart([
          { name: 'prompt', data: 'wide' },
          { name: 'image', filename: 'w.png', type: 'image/png', data: im },
        ]);
        return { kind: 'png-100000x1', method: 'POST', path: '/v1/jobs', headers: { ...bearer, 'content-type': m.type }, body: m.body };
      },
    },
    {
      kind: 'truncated-image',
      weight: 3,
      make: () => {
        const im = pick([img.truncPng, img.truncJpeg, img.png.subarray(0, 40), img.jpeg.subarray(0, 4), Buffer.from('GIF89a')]);
        if (rnd() < 0.4)
          return jsonReq(
            'truncated-image',
            pick(['/v1/jobs', '/v1/batches']),
            rnd() < 0.5
              ? json({ prompt: 't', image: im.toString('base64') })
              : json({ items: [{ prompt: 'ok' }, { prompt: 't', image: im.toString('base64') }] }),
          );
        const m = multipart([
          { name: 'prompt', data: 't' },
          { name: 'image', filename: 't.png', type: 'image/png', data: im },
        ]);
        return { kind: 'truncated-image', method: 'POST', path: '/v1/jobs', headers: { ...bearer, 'content-type': m.type }, body: m.body };
      },
    },
    {
      kind: 'three-files',
      weight: 2,
      make: () => {
        const m = multipart([
          { name: 'prompt', data: 'three' },
          ...[0, 1, 2].map((i) => ({ name: pick(['image', `image${i}`, 'file']), filename: `${i}.png`, type: 'image/png', data: img.png })),
        ]);
        return { kind: 'three-files', method: 'POST', path: '/v1/jobs', headers: { ...bearer, 'content-type': m.type }, body: m.body };
      },
    },
    {
      kind: 'basic-no-colon',
      weight: 3,
      make: () => ({
        kind: 'basic-no-colon',
        method: pick(['POST', 'GET']),
        path: pick(['/v1/jobs', `/v1/jobs/${id()}`, '/v1/batches', '/admin/queues']),
        headers: {
          authorization: pick([
            'Basic ' + Buffer.from(keys.api).toString('base64'),
            'Basic ' + Buffer.from('x').toString('base64'),
            'Basic ====',
            'Basic ' + Buffer.from(':').toString('base64'),
            'Basic ' + 'A'.repeat(9000),
          ]),
          'content-type': 'application/json',
        },
        body: json({ prompt: 'auth?' }),
      }),
    },
    {
      kind: 'bad-percent',
      weight: 4,
      make: () => ({
        kind: 'bad-percent',
        method: 'GET',
        headers: bearer,
        path: pick([
          '/v1/jobs/%zz',
          '/v1/jobs/%',
          '/v1/jobs/%E0%A4%A',
          '/v1/batches/%C0%AF/verdicts',
          '/v1/batches/%ff%fe',
          '/%ff',
          '/v1/jobs/%00',
          '/v1/jobs/abc%2',
          '/healthz%',
          '/metrics?%zz=1',
          '/v1/batches/x/verdicts?cursor=%zz&limit=%',
          '/openapi.json?%',
          '/docs/%zz',
          '/v1/%2e%2e/healthz',
        ]),
      }),
    },
    {
      kind: 'overlong-params',
      weight: 3,
      make: () => ({
        kind: 'overlong-params',
        method: 'GET',
        headers: bearer,
        path:
          `/v1/batches/${batchId()}/verdicts?` +
          pick([
            'limit=99999999999999999999999',
            'limit=-1',
            'limit=abc',
            'limit=1e309',
            'limit=0',
            `cursor=${'z'.repeat(30_000)}`,
            `cursor=${encodeURIComponent('\u0000\ud7ff')}`,
            'cursor=-5&limit=1',
            'limit=1&limit=2',
            `x=${'y'.repeat(60_000)}`,
          ]),
      }),
    },
    {
      kind: 'random-bytes',
      weight: 6,
      make: () => ({
        kind: 'random-bytes',
        method: pick(['POST', 'POST', 'PUT', 'PATCH', 'GET']),
        path: pick(['/v1/jobs', '/v1/batches', `/v1/jobs/${id()}`, '/healthz', '/readyz', '/metrics', '/openapi.json', '/docs']),
        headers: {
          ...bearer,
          ...(rnd() < 0.8
            ? {
                'content-type': pick([
                  'application/json',
                  'text/plain',
                  'application/octet-stream',
                  'multipart/form-data; boundary=x',
                  'application/x-www-form-urlencoded',
                  'application/json; charset=utf-16',
                  'image/png',
                ]),
              }
            : {}),
        },
        body: randomBytes(Math.floor(rnd() * 4096)),
      }),
    },
    {
      kind: 'body-types',
      weight: 5,
      make: () => {
        const bodies: [string | undefined, string | Buffer | undefined][] = [
          ['text/plain', 'prompt=hello'],
          ['application/json', ''],
          ['application/json', 'null'],
          ['application/json', '[]'],
          ['application/json', '"str"'],
          ['application/json', '{"prompt":1}'],
          ['application/json', '{"prompt":"x","image":"not base64!!"}'],
          ['application/json', '{"prompt":"x","image":123}'],
          ['application/json', '{"items":{}}'],
          ['application/json', '{"items":[]}'],
          ['application/json', json({ items: Array.from({ length: 501 }, () => ({ prompt: 'x' })) })],
          ['application/json', '{"__proto__":{"admin":true},"prompt":"x"}'],
          ['application/x-www-form-urlencoded', 'prompt=hi&image=abc'],
          [undefined, undefined],
          [undefined, 'no content type'],
          ['application/json', '{"prompt":"x","profile":"../../etc/passwd"}'],
          ['application/json', '{"items":[{"prompt":"fine"},{"prompt":""}]}'],
          ['application/json', '{"prompt":"x","answer":' + json('a'.repeat(20_000)) + '}'],
        ];
        const [type, body] = pick(bodies);
        return {
          kind: 'body-types',
          method: 'POST',
          path: pick(['/v1/jobs', '/v1/batches']),
          headers: { ...bearer, ...(type ? { 'content-type': type } : {}) },
          body,
        };
      },
    },
    {
      kind: 'ops-routes',
      weight: 4,
      make: () => ({
        kind: 'ops-routes',
        method: pick(['GET', 'GET', 'HEAD', 'POST', 'OPTIONS', 'DELETE']),
        path: pick(['/openapi.json', '/docs', '/docs/', '/docs/swagger-ui.css', '/healthz', '/readyz', '/metrics', '/', '/v1', '/v1/jobs', '/v1/batches']),
        headers: rnd() < 0.5 ? bearer : {},
      }),
    },
    {
      kind: 'idem-dupes',
      weight: 2,
      make: () => {
        const key = `fuzz-${randomBytes(6).toString('hex')}`;
        const same = json({ prompt: `dup ${key}` });
        const group = key;
        const n = 6;
        return Array.from({ length: n }, (_, i) => ({
          ...jsonReq('idem-dupes', pick(['/v1/jobs']), i === n - 1 ? json({ prompt: `different ${key}` }) : same, { 'idempotency-key': key }),
          group,
        }));
      },
    },
  ];

  const total = classes.reduce((a, c) => a + c.weight, 0);
  const out: FuzzRequest[] = [];
  // Huge prompts: a few, tens of MB each.
  for (let i = 0; i < o.hugeCount; i++) {
    const mb = [12, 24, 40, 70][i % 4];
    const big = 'A'.repeat(mb * 1024 * 1024);
    out.push(
      i % 2 === 0
        ? jsonReq('huge-prompt', '/v1/jobs', `{"prompt":"${big}"}`)
        : (() => {
            const m = multipart([{ name: 'prompt', data: big }]);
            return { kind: 'huge-prompt', method: 'POST', path: '/v1/jobs', headers: { ...bearer, 'content-type': m.type }, body: m.body };
          })(),
    );
  }
  while (out.length < o.requests) {
    let r = rnd() * total;
    const c = classes.find((x) => (r -= x.weight) < 0) ?? classes[0];
    const made = c.make();
    for (const r of Array.isArray(made) ? made : [made]) {
      if (!r.refuse && MUST_REFUSE[r.kind]) r.refuse = MUST_REFUSE[r.kind];
      out.push(r);
    }
  }
  // Spread the huge ones over the run.
  for (let i = 0; i < o.hugeCount; i++) {
    const [h] = out.splice(0, 1);
    out.splice(Math.floor(((i + 1) * out.length) / (o.hugeCount + 1)), 0, h);
  }
  return out;
}

interface Sent {
  status: number | string;
  ms: number;
  body: string;
}

/** A request node:http will not write (raw spaces or bytes in the path): written by hand on a socket, Connection: close. */
function sendRaw(port: number, r: FuzzRequest, started: number): Promise<Sent> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.setTimeout(30_000, () => socket.destroy(new Error('timeout')));
    socket.on('connect', () => {
      const body = r.body === undefined ? Buffer.alloc(0) : Buffer.from(r.body);
      const head = [
        `${r.method} ${r.path} HTTP/1.1`,
        `host: 127.0.0.1:${port}`,
        'connection: close',
        ...Object.entries(r.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
      ];
      if (r.body !== undefined) head.push(`content-length: ${body.length}`);
      socket.end(Buffer.concat([Buffer.from(head.join('\r\n') + '\r\n\r\n', 'latin1'), body]));
    });
    socket.on('data', (d: Buffer) => chunks.push(d));
    const done = (err?: Error) => {
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({
        status: m ? Number(m[1]) : `error:${err?.message ?? 'no status line'}`,
        ms: performance.now() - started,
        body: text.slice(text.indexOf('\r\n\r\n') + 4),
      });
    };
    socket.on('error', (e) => done(e));
    socket.on('close', () => done());
  });
}

function send(agent: Agent, port: number, r: FuzzRequest): Promise<Sent> {
  const started = performance.now();
  if (/[^\x21-\x7e]/.test(r.path)) return sendRaw(port, r, started);
  return new Promise((resolve) => {
    const headers: Record<string, string | number> = { ...(r.headers ?? {}) };
    if (r.body !== undefined) headers['content-length'] = Buffer.byteLength(r.body);
    const req = request({ host: '127.0.0.1', port, method: r.method, path: r.path, headers, agent, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (d: Buffer) => {
        if (size < 64 * 1024) chunks.push(d);
        size += d.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - started, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (e) => resolve({ status: `error:${(e as NodeJS.ErrnoException).code ?? e.message}`, ms: performance.now() - started, body: '' }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: `error:${(e as NodeJS.ErrnoException).code ?? e.message}`, ms: performance.now() - started, body: '' }));
    if (r.body !== undefined) req.end(r.body);
    else req.end();
  });
}

const inc = (m: Record<string, number>, k: string, by = 1) => (m[k] = (m[k] ?? 0) + by);

export async function runFuzz(overrides: Partial<FuzzOptions> = {}): Promise<FuzzReport> {
  const o = { ...FUZZ_DEFAULTS, ...overrides };
  const started = Date.now();
  const apiKey = `fuzz-${randomBytes(12).toString('hex')}`;
  const adminKey = `admin-${randomBytes(12).toString('hex')}`;
  const prefix = `{fuzz${randomBytes(3).toString('hex')}}`;
  const blobDir = mkdtempSync(join(tmpdir(), 'fuzz-blobs-'));
  const port = await freePort();
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  const intake = spawnRole('intake-api', {
    REDIS_URL: o.redisUrl,
    QUEUE_PREFIX: prefix,
    BLOB_DIR: blobDir,
    PORT: String(port),
    HOST: '127.0.0.1',
    API_KEYS: `fuzz:${sha(apiKey)}`,
    ADMIN_API_KEY_SHA256: sha(adminKey),
    INTAKE_MAX_BACKLOG: '10000000',
  });
  const report: FuzzReport = {
    sent: 0,
    byStatus: {},
    byKind: {},
    fiveXx: {},
    fiveXxSamples: [],
    acceptedHostile: {},
    adminOpen: [],
    slow: {},
    maxLatencyMs: 0,
    maxLatencyKind: '',
    transportErrors: {},
    accepted202: 0,
    acceptedIds: 0,
    enqueuedJobs: 0,
    verdicts: 0,
    enqueuedRefused: [],
    seconds: 0,
  };
  const accepted = new Set<string>();
  const agent = new Agent({ keepAlive: true, maxSockets: o.concurrency });
  try {
    await intake.ready(120_000);
    const requests = await buildRequests(o, { api: apiKey, admin: adminKey });
    o.log(`fuzz: intake pid ${intake.pid} on :${port}, ${requests.length} requests, ${o.concurrency} at a time, prefix ${prefix}`);
    // Units: a single request, or a group of concurrent duplicates.
    const units: FuzzRequest[][] = [];
    for (const r of requests) {
      const last = units[units.length - 1];
      if (r.group && last && last[0].group === r.group) last.push(r);
      else units.push([r]);
    }
    const deadline = started + o.maxSeconds * 1000;
    let next = 0;
    const record = (r: FuzzRequest, s: Sent) => {
      report.sent++;
      const status = String(s.status);
      inc(report.byStatus, status);
      inc((report.byKind[r.kind] ??= {}), status);
      if (typeof s.status === 'string') inc(report.transportErrors, `${r.kind} ${status}`);
      if (typeof s.status === 'number' && s.status >= 500) {
        inc(report.fiveXx, r.kind);
        if (report.fiveXxSamples.length < 40) report.fiveXxSamples.push(`${r.kind} ${r.method} ${r.path.slice(0, 80)} -> ${s.status} ${s.body.slice(0, 160)}`);
      }
      if (
        r.kind === 'admin-no-key' &&
        typeof s.status === 'number' &&
        s.status < 400 &&
        !(r.headers?.authorization ?? '').includes(Buffer.from(adminKey).toString('base64'))
      ) {
        report.adminOpen.push(`${r.method} ${r.path} [${r.headers?.authorization ?? 'no auth'}] -> ${s.status}`);
      }
      if (s.ms > 2000) inc(report.slow, r.kind);
      if (s.ms > report.maxLatencyMs) {
        report.maxLatencyMs = s.ms;
        report.maxLatencyKind = r.kind;
      }
      if (r.refuse && r.method === 'POST' && typeof s.status === 'number' && s.status >= 200 && s.status < 300 && /^\/v1\/(jobs|batches)$/.test(r.path)) {
        inc(report.acceptedHostile, r.refuse);
      }
      if (s.status === 202 || s.status === 200 || s.status === 201) {
        try {
          const body = JSON.parse(s.body) as { id?: string; job_ids?: string[]; status?: string };
          if (r.method === 'POST' && (r.path.startsWith('/v1/jobs') || r.path.startsWith('/v1/batches'))) {
            if (s.status === 202 || body.job_ids || body.status === 'queued') {
              report.accepted202++;
              if (body.job_ids) body.job_ids.forEach((id) => accepted.add(id));
              else if (body.id) accepted.add(body.id);
            }
          }
        } catch {
          /* not JSON */
        }
      }
    };
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        for (let i = next++; i < units.length && Date.now() < deadline; i = next++) {
          const unit = units[i];
          const results = await Promise.all(unit.map((r) => send(agent, port, r)));
          unit.forEach((r, k) => record(r, results[k]));
        }
      }),
    );
    report.peakRssBytes = peakRssBytes(intake.pid);
    if (!intake.alive()) report.intakeExit = `intake exited during the run: ${intake.output().slice(-1500)}`;

    // What got enqueued, against the 202s answered.
    report.acceptedIds = accepted.size;
    const redis = new Redis(redisOptions(o.redisUrl));
    try {
      for (const stage of ['generate', 'evaluate', 'align'] as Stage[]) {
        const q = new Queue(stage, { connection: redisOptions(o.redisUrl), prefix });
        const jobs = await q.getJobs(['wait', 'prioritized', 'delayed', 'active', 'completed', 'failed', 'waiting-children']);
        report.enqueuedJobs += jobs.length;
        for (const j of jobs) if (j && !accepted.has(j.id!)) report.enqueuedRefused.push(`${stage} job ${j.id}`);
        await q.close();
      }
      const verdictPrefix = verdictKeys(prefix).verdict('');
      let cursor = '0';
      do {
        const [nextCursor, found] = await redis.scan(cursor, 'MATCH', `${verdictPrefix.replace(/([*?[\]])/g, '\\$1')}*`, 'COUNT', 1000);
        cursor = nextCursor;
        for (const k of found) {
          const vid = k.slice(verdictPrefix.length);
          report.verdicts++;
          if (!accepted.has(vid)) report.enqueuedRefused.push(`verdict ${vid}`);
        }
      } while (cursor !== '0');
    } finally {
      redis.disconnect();
    }
  } finally {
    agent.destroy();
    report.seconds = (Date.now() - started) / 1000;
    report.peakRssBytes ??= peakRssBytes(intake.pid);
    await intake.kill('SIGTERM');
    await deleteKeys(o.redisUrl, prefix).catch(() => undefined);
    rmSync(blobDir, { recursive: true, force: true });
  }
  return report;
}

export function formatFuzzReport(r: FuzzReport): string {
  const lines = [
    `sent ${r.sent} in ${r.seconds.toFixed(1)} s; status counts ${JSON.stringify(r.byStatus)}`,
    `5xx ${Object.values(r.fiveXx).reduce((a, b) => a + b, 0)}${Object.keys(r.fiveXx).length ? ` by kind ${JSON.stringify(r.fiveXx)}` : ''}`,
    `max latency ${r.maxLatencyMs.toFixed(0)} ms (${r.maxLatencyKind}); over 2 s: ${JSON.stringify(r.slow)}`,
    `intake peak RSS (VmHWM) ${r.peakRssBytes === undefined ? '?' : `${(r.peakRssBytes / 1024 / 1024).toFixed(0)} MB`}`,
    `enqueued: ${r.enqueuedJobs} queue jobs, ${r.verdicts} verdicts; ${r.accepted202} accepting answers for ${r.acceptedIds} ids; enqueued although refused: ${r.enqueuedRefused.length}`,
    `admin answered < 400 without the admin key: ${r.adminOpen.length}`,
    `hostile submissions accepted: ${Object.keys(r.acceptedHostile).length ? JSON.stringify(r.acceptedHostile) : 'none'}`,
  ];
  if (Object.keys(r.transportErrors).length) lines.push(`transport errors: ${JSON.stringify(r.transportErrors)}`);
  lines.push('by kind:');
  for (const [k, v] of Object.entries(r.byKind).sort()) lines.push(`  ${k.padEnd(22)} ${JSON.stringify(v)}`);
  for (const s of r.fiveXxSamples.slice(0, 20)) lines.push(`  5xx: ${s}`);
  for (const s of r.adminOpen.slice(0, 10)) lines.push(`  admin open: ${s}`);
  for (const s of r.enqueuedRefused.slice(0, 10)) lines.push(`  enqueued although refused: ${s}`);
  if (r.intakeExit) lines.push(r.intakeExit);
  return lines.join('\n');
}
