/**
 * The production build: `npm run build` compiles apps and libs to dist/, and every role runs from there with plain
 * node — no swc, no TypeScript — as its own process: the intake API, and generator, evaluator and aligner (the
 * generator's VLM on its engine thread, loaded from the compiled engine-thread.js), and the notifier. One image job
 * and one supplied-answer job are moderated to final verdicts through the compiled intake, and the compiled
 * notifier delivers their signed verdict.completed events to a registered endpoint.
 */
import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Verdict } from '@libs/contracts';
import { sha256Hex } from '@libs/storage';
import { verifyWebhook } from '@libs/webhooks';
import { deleteKeys, freePort } from '@libs/queue';
import { ROOT, spawnRole, type RoleProcess } from './harness/processes';
import { client, REDIS_URL, solidPng, TINY_PACKS_ENV, waitFor } from './support';

describe('compiled build (npm run build, plain node)', () => {
  const apiKey = `build-${randomBytes(8).toString('hex')}`;
  const blobDir = mkdtempSync(join(tmpdir(), 'build-blobs-'));
  const env: NodeJS.ProcessEnv = {
    REDIS_URL,
    ...TINY_PACKS_ENV,
    QUEUE_PREFIX: `{build${randomBytes(3).toString('hex')}}`,
    BLOB_DIR: blobDir,
    API_KEYS: `build:${sha256Hex(apiKey)}`,
    GENERATOR_MAX_NEW_TOKENS: '6',
    ORT_INTRA_OP_THREADS: '1',
    HEALTH_PORT: '0',
    // The compiled output must not lean on a register hook inherited from the test runner.
    NODE_OPTIONS: '',
    WEBHOOK_ALLOWED_TARGETS: '127.0.0.1',
  };
  const roles: RoleProcess[] = [];
  let api: ReturnType<typeof client>;
  const received: { headers: Record<string, string>; body: string }[] = [];
  let receiver: Server;

  beforeAll(async () => {
    execFileSync(process.execPath, ['tools/build/compile.js'], { cwd: ROOT, stdio: 'pipe' });
    const port = await freePort();
    roles.push(spawnRole('intake-api', { ...env, PORT: String(port), HOST: '127.0.0.1' }, 'compiled'));
    for (const role of ['generator', 'evaluator', 'aligner', 'notifier'] as const) roles.push(spawnRole(role, env, 'compiled'));
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        received.push({ headers: req.headers as Record<string, string>, body });
        res.end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
    await Promise.all(roles.map((r) => r.ready(90_000)));
    api = client(`http://127.0.0.1:${port}`, apiKey);
  });

  afterAll(async () => {
    receiver?.close();
    for (const role of roles) if (role.alive()) role.child.kill('SIGTERM');
    await Promise.all(roles.map((r) => r.exited));
    await deleteKeys(REDIS_URL, env.QUEUE_PREFIX!);
    rmSync(blobDir, { recursive: true, force: true });
  });

  it('emits JavaScript with every path alias resolved and the assets the code reads', () => {
    for (const entry of ['apps/intake-api/src/main.js', 'apps/generator/src/main.js', 'libs/vlm/src/engine-thread.js', 'libs/onnx-graph/src/onnx.proto']) {
      expect(existsSync(join(ROOT, 'dist', entry)), entry).toBe(true);
    }
    const app = readFileSync(join(ROOT, 'dist/apps/intake-api/src/app.js'), 'utf8');
    expect(app).not.toMatch(/require\("@libs\//);
    expect(app).toMatch(/require\("\.\.\/\.\.\/\.\.\/libs\/contracts\/src\/index\.js"\)/);
  });

  it('moderates an image job and a supplied answer to final verdicts, every role compiled', async () => {
    const port = (receiver.address() as { port: number }).port;
    const endpoint = await api.post('/v1/webhooks', { url: `http://127.0.0.1:${port}/hook` });
    expect(endpoint.status, JSON.stringify(endpoint.body)).toBe(201);
    const png = await solidPng(40, 40, [200, 40, 40]);
    const image = await api.post('/v1/jobs', { prompt: 'Is the guard closed?', image: png.toString('base64') });
    const answered = await api.post('/v1/jobs', { prompt: 'Is the guard closed?', answer: 'Yes, the guard is closed.' });
    expect(image.status, JSON.stringify(image.body)).toBe(202);
    expect(answered.status, JSON.stringify(answered.body)).toBe(202);
    for (const accepted of [image.body, answered.body]) {
      const verdict = await waitFor<Verdict>(
        `verdict of ${accepted.id}`,
        async () => {
          const r = await api.get(accepted.poll_url);
          return r.status === 200 && (r.body.status === 'succeeded' || r.body.status === 'failed') ? r.body : undefined;
        },
        90_000,
        200,
      );
      expect(verdict.status, JSON.stringify(verdict.error)).toBe('succeeded');
      expect(verdict.final_answer).toEqual(expect.any(String));
    }
    const generated = (await api.get(image.body.poll_url)).body as Verdict;
    expect(generated.timings.generate_ms).toEqual(expect.any(Number));
    expect(generated.model?.name).toEqual(expect.any(String));
    const events = await waitFor('two webhook deliveries', async () => (received.length >= 2 ? received : undefined), 30_000, 100);
    for (const { headers, body } of events) {
      expect(() => verifyWebhook(endpoint.body.secret, headers, body)).not.toThrow();
      expect(JSON.parse(body)).toMatchObject({ type: 'verdict.completed' });
    }
    expect(new Set(events.map((e) => JSON.parse(e.body).data.id))).toEqual(new Set([image.body.id, answered.body.id]));
  });
});
