import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { retrySchedule, scheduleBackoff, TargetGuard, WebhookClient, type LookupAll } from '@libs/webhooks';

interface Hit {
  path: string;
  host: string | undefined;
  body: string;
}

/** A real receiver on 127.0.0.1 whose answer is chosen per path. */
function receiver(): Promise<{ server: Server; port: number; hits: Hit[] }> {
  const hits: Hit[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      hits.push({ path: req.url ?? '', host: req.headers.host, body });
      if (req.url === '/ok') res.writeHead(204).end();
      else if (req.url === '/fail') res.writeHead(500).end('boom');
      else if (req.url === '/redirect') res.writeHead(302, { location: '/ok' }).end();
      else if (req.url === '/hang')
        return; // never answers
      else if (req.url === '/huge') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        const chunk = Buffer.alloc(16 * 1024, 1);
        const pump = () => {
          while (!res.destroyed && res.write(chunk));
          if (!res.destroyed) res.once('drain', pump);
        };
        pump();
      } else res.writeHead(404).end();
    });
  });
  return new Promise((done) => server.listen(0, '127.0.0.1', () => done({ server, port: (server.address() as AddressInfo).port, hits })));
}

describe('WebhookClient: one attempt against a real receiver', () => {
  let r: Awaited<ReturnType<typeof receiver>>;
  let base: string;
  const allowed = new TargetGuard(['127.0.0.1']);
  const client = new WebhookClient(allowed, { timeoutMs: 400, maxResponseBytes: 1000 });

  beforeAll(async () => {
    r = await receiver();
    base = `http://127.0.0.1:${r.port}`;
  });
  afterAll(() => new Promise<void>((done) => r.server.close(() => done())));

  it('2xx is delivered; the body and headers arrive as sent', async () => {
    const result = await client.post(`${base}/ok`, '{"a":1}', { 'webhook-id': 'evt_1' });
    expect(result).toMatchObject({ delivered: true, status: 204 });
    expect(r.hits.at(-1)).toMatchObject({ path: '/ok', body: '{"a":1}' });
  });

  it('5xx is not delivered', async () => {
    expect(await client.post(`${base}/fail`, '{}', {})).toMatchObject({ delivered: false, status: 500, error: 'HTTP 500' });
  });

  it('a redirect is a failure and is not followed', async () => {
    const before = r.hits.filter((h) => h.path === '/ok').length;
    const result = await client.post(`${base}/redirect`, '{}', {});
    expect(result).toMatchObject({ delivered: false, status: 302 });
    expect(result.error).toMatch(/redirects are not followed/);
    expect(r.hits.filter((h) => h.path === '/ok').length).toBe(before);
  });

  it('a receiver that never answers times out at the deadline', async () => {
    const started = Date.now();
    const result = await client.post(`${base}/hang`, '{}', {});
    expect(result).toMatchObject({ delivered: false });
    expect(result.error).toMatch(/timed out after 400 ms/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(380);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('an endless response body is cut at the cap; the status decides', async () => {
    const result = await client.post(`${base}/huge`, '{}', {});
    expect(result).toMatchObject({ delivered: true, status: 200, truncated: true });
    expect(result.bytesRead).toBeGreaterThan(1000);
    expect(result.bytesRead).toBeLessThanOrEqual(1000 + 64 * 1024);
  });

  it('without the allow-list, 127.0.0.1 and localhost are refused before any connection', async () => {
    const strict = new WebhookClient(new TargetGuard(), { timeoutMs: 400, maxResponseBytes: 1000 });
    const before = r.hits.length;
    for (const url of [
      `http://127.0.0.1:${r.port}/ok`,
      `https://127.0.0.1:${r.port}/ok`,
      `https://localhost:${r.port}/ok`,
      `https://[::ffff:127.0.0.1]:${r.port}/ok`,
    ]) {
      const result = await strict.post(url, '{}', {});
      expect(result.delivered, url).toBe(false);
      expect(result.forbidden || /https/.test(result.error ?? ''), `${url}: ${result.error}`).toBe(true);
    }
    expect((await strict.post(`https://localhost:${r.port}/ok`, '{}', {})).forbidden).toBe(true);
    expect(r.hits.length).toBe(before);
  });

  it('the connection goes to the address that was checked, whatever DNS answers next (no rebinding)', async () => {
    let calls = 0;
    // First answer: the allowed receiver; any later answer would be the metadata service.
    const rebinding: LookupAll = async () => [{ address: calls++ === 0 ? '127.0.0.1' : '169.254.169.254', family: 4 }];
    // Allowed by name (plain http needs it); the name is resolved once and the socket pinned to that answer.
    const guard = new TargetGuard(['hooks.rebind.example'], rebinding);
    const pinned = new WebhookClient(guard, { timeoutMs: 400, maxResponseBytes: 1000 });
    const result = await pinned.post(`http://hooks.rebind.example:${r.port}/ok`, '{"pinned":true}', {});
    expect(result).toMatchObject({ delivered: true, status: 204 });
    expect(calls).toBe(1);
    // The receiver saw the name in Host (virtual hosting and TLS work by name), over the pinned address.
    expect(r.hits.at(-1)).toMatchObject({ host: `hooks.rebind.example:${r.port}`, body: '{"pinned":true}' });
  });
});

describe('retry schedule', () => {
  it('doubles from the first delay, at most an hour a step, and adds up to the give-up window exactly', () => {
    const waits = retrySchedule(5000, 86_400_000);
    expect(waits.slice(0, 4)).toEqual([5000, 10_000, 20_000, 40_000]);
    expect(Math.max(...waits)).toBe(3_600_000);
    expect(waits.reduce((a, b) => a + b, 0)).toBe(86_400_000);
    expect(waits.length + 1).toBe(34);
    expect(retrySchedule(100, 1500)).toEqual([100, 200, 400, 800]);
    expect(retrySchedule(100, 1000)).toEqual([100, 200, 400, 300]);
    const backoff = scheduleBackoff([100, 200, 400]);
    expect([1, 2, 3, 4].map(backoff)).toEqual([100, 200, 400, 400]);
  });
});
