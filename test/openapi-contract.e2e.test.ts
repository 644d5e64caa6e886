/**
 * The API contract (issue 10 item 4): /openapi.json describes what the server does. The document's shape is
 * checked here, `redocly lint` passes on it, a typed client generated from it (openapi-typescript + openapi-fetch)
 * compiles under `tsc --strict` and drives a job, a JSON batch and a multipart batch to final verdicts, and bodies
 * are strict (unknown fields are refused with unknown_field). Every response the e2e suites see through `client()`
 * is validated against the same document (test/support.ts).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import openapiTS, { astToString } from 'openapi-typescript';
import { ERROR_CODES } from '@libs/contracts';
import { startLocalPipeline, type LocalPipeline } from './harness/local-pipeline';
import { client, form, REDIS_URL, responseProblems, solidPng, TINY_PACKS_ENV } from './support';

const run = promisify(execFile);
const ROOT = join(__dirname, '..');
const bin = (name: string) => join(ROOT, 'node_modules', '.bin', name);

type Json = Record<string, any>;

/** Every schema node with `properties`, with its path. */
function objectSchemas(node: unknown, path: string, out: [string, Json][] = []): [string, Json][] {
  if (!node || typeof node !== 'object') return out;
  const o = node as Json;
  if (o.properties) out.push([path, o]);
  for (const [k, v] of Object.entries(o)) objectSchemas(v, `${path}/${k}`, out);
  return out;
}

const CLIENT_PROGRAM = `
import createClient from 'openapi-fetch';
import type { components, paths } from './schema';

type Verdict = components['schemas']['Verdict'];
const [baseUrl, apiKey, pngBase64] = process.argv.slice(2);
const api = createClient<paths>({ baseUrl, headers: { authorization: 'Bearer ' + apiKey } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function verdict(id: string): Promise<Verdict> {
  for (let i = 0; i < 600; i++) {
    const { data, error } = await api.GET('/v1/jobs/{id}', { params: { path: { id } } });
    if (error) throw new Error(error.error.code + ': ' + error.error.message);
    if (data.status === 'succeeded' || data.status === 'failed') return data;
    await sleep(100);
  }
  throw new Error('no verdict for ' + id);
}

async function batchVerdicts(id: string): Promise<Verdict[]> {
  for (let i = 0; i < 600; i++) {
    const { data, error } = await api.GET('/v1/batches/{id}', { params: { path: { id } } });
    if (error) throw new Error(error.error.code);
    if (data.done) break;
    await sleep(100);
  }
  const all: Verdict[] = [];
  let cursor: string | undefined;
  for (;;) {
    // limit is an integer in the document, so a number here.
    const { data, error } = await api.GET('/v1/batches/{id}/verdicts', { params: { path: { id }, query: { limit: 1, cursor } } });
    if (error) throw new Error(error.error.code);
    all.push(...data.data);
    if (data.next_cursor === null) return all;
    cursor = data.next_cursor;
  }
}

async function main(): Promise<void> {
  const job = await api.POST('/v1/jobs', {
    body: { prompt: 'What machine is this?', answer: 'A hydraulic press.', image: 'data:image/png;base64,' + pngBase64, metadata: { line: 'A' } },
  });
  if (!job.data) throw new Error('job refused: ' + JSON.stringify(job.error));
  const single = await verdict(job.data.id);

  const batch = await api.POST('/v1/batches', {
    body: { items: [{ prompt: 'Is this safe?', answer: 'Yes, with guards on.' }, { prompt: 'What is shown?', answer: 'A lathe.', image: pngBase64 }], metadata: { run: 1 } },
  });
  if (!batch.data) throw new Error('batch refused: ' + JSON.stringify(batch.error));
  const jsonBatch = await batchVerdicts(batch.data.id);

  const png = Buffer.from(pngBase64, 'base64');
  const multipart = await api.POST('/v1/batches', {
    body: { items: JSON.stringify([{ prompt: 'What is this?', answer: 'A drill.', file: 'photo1' }, { prompt: 'And this?', answer: 'Nothing.' }]) },
    bodySerializer(body) {
      const f = new FormData();
      for (const [k, v] of Object.entries(body)) if (typeof v === 'string') f.append(k, v);
      f.append('photo1', new Blob([png], { type: 'image/png' }), 'photo1.png');
      return f;
    },
  });
  if (!multipart.data) throw new Error('multipart batch refused: ' + JSON.stringify(multipart.error));
  const multipartBatch = await batchVerdicts(multipart.data.id);

  // A misspelt field (smuggled past the types, which do not declare it) is refused with its own, typed, code.
  const misspelt = { prompt: 'q', answer: 'a', propmt: 'x' } as components['schemas']['JobSubmission'];
  const unknown = await api.POST('/v1/jobs', { body: misspelt });
  const code: components['schemas']['ApiError']['error']['code'] | undefined = unknown.error?.error.code;

  console.log(JSON.stringify({ single, jsonBatch, multipartBatch, unknownStatus: unknown.response.status, unknownCode: code }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
`;

describe('the OpenAPI document is the contract', () => {
  let p: LocalPipeline;
  let doc: Json;
  let dir: string;

  beforeAll(async () => {
    p = await startLocalPipeline({ quiet: true, env: { REDIS_URL, ...TINY_PACKS_ENV, METRICS_AUTH: 'admin' } });
    doc = (await client(p.url).get('/openapi.json')).body;
    dir = mkdtempSync(join(tmpdir(), 'openapi-contract-'));
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  }, 120_000);
  afterAll(async () => {
    await p?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('declares servers, security per route, every error with ApiError, integer limit, binary files, strict bodies, no internal schemas', () => {
    expect(doc.openapi).toMatch(/^3\.0\./);
    expect(doc.servers).toEqual([{ url: p.url, description: expect.any(String) }]);
    const schemas = doc.components.schemas as Json;
    expect(schemas).not.toHaveProperty('StageJob');
    expect(schemas.ApiError.properties.error.properties.code.enum.sort()).toEqual(Object.keys(ERROR_CODES).sort());
    expect(schemas.ApiError.properties.error.properties.code.enum).toContain('unknown_field');
    for (const [route, methods] of Object.entries(doc.paths as Json)) {
      for (const [method, op] of Object.entries(methods as Json)) {
        const where = `${method} ${route}`;
        expect(op.summary, where).toEqual(expect.any(String));
        if (route.startsWith('/v1/') || route.startsWith('/admin/') || route === '/metrics')
          expect(op.security, where).toEqual([{ bearer: [] }, { apiKey: [] }, { basic: [] }]);
        else expect(op.security, where).toEqual([]);
        for (const [status, response] of Object.entries(op.responses as Json)) {
          expect(response.description, `${where} ${status}`).toEqual(expect.any(String));
          if (Number(status) >= 400 && !(route === '/readyz' && status === '503')) {
            expect(response.content['application/json'].schema, `${where} ${status}`).toEqual({ $ref: '#/components/schemas/ApiError' });
          }
        }
        expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['400', '408', '431', '500']));
        if (route.startsWith('/v1/')) expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['401', '503']));
        if (method === 'post' && ['/v1/jobs', '/v1/batches'].includes(route)) {
          expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['202', '403', '409', '413', '415', '422', '429']));
        }
        if (route.startsWith('/admin/')) expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['401', '403']));
        if (method === 'get' && route.includes('{id}')) {
          expect(Object.keys(op.responses)).toContain('404');
          expect(op.responses['400'].description).toContain('invalid_id');
        }
      }
    }
    expect(doc.paths['/v1/jobs'].post.responses['400'].description).toMatch(/json_too_deep.*too_many_files/);
    expect(doc.paths['/v1/jobs'].post.responses['400'].description).toContain('unknown_field');
    expect(doc.paths['/metrics'].get.responses).toHaveProperty('401');
    const limit = doc.paths['/v1/batches/{id}/verdicts'].get.parameters.find((x: Json) => x.name === 'limit');
    expect(limit).toMatchObject({ in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000 } });
    // Multipart: the job's image and the batch's named file fields are binary; the batch's items are JSON text.
    expect(doc.paths['/v1/jobs'].post.requestBody.content['multipart/form-data'].schema).toEqual({ $ref: '#/components/schemas/JobSubmissionForm' });
    expect(schemas.JobSubmissionForm.properties.image).toMatchObject({ type: 'string', format: 'binary' });
    expect(schemas.BatchSubmissionForm.properties.items).toMatchObject({ type: 'string', description: expect.stringContaining('JSON') });
    expect(schemas.BatchSubmissionForm.additionalProperties).toMatchObject({ type: 'string', format: 'binary' });
    for (const name of ['JobSubmission', 'BatchSubmission', 'JobSubmissionForm', 'BatchFormItem', 'BatchItem', 'WebhookRegistration']) {
      expect(schemas[name].additionalProperties, name).toBe(false);
    }
    // Webhooks: callback_url on jobs and batches (not on a batch's items), the routes, the signed event and its headers.
    expect(schemas.JobSubmission.properties).toHaveProperty('callback_url');
    expect(schemas.BatchSubmission.properties).toHaveProperty('callback_url');
    expect(schemas.BatchItem.properties).not.toHaveProperty('callback_url');
    expect(doc.paths['/v1/webhooks'].post.responses['201'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/WebhookCreated' });
    expect(doc.paths['/v1/webhooks'].post.responses['422'].description).toContain('webhook_target_forbidden');
    expect(doc.paths['/v1/jobs'].post.responses['422'].description).toContain('callback_not_registered');
    // Per-tenant limits: each submission route lists every 429 code, with Retry-After.
    for (const route of ['/v1/jobs', '/v1/batches']) {
      const tooMany = doc.paths[route].post.responses['429'];
      for (const code of ['backlog_full', 'tenant_rate_limited', 'tenant_in_flight_limit', 'tenant_backlog_share'])
        expect(tooMany.description, route).toContain(code);
      expect(tooMany.headers['Retry-After'].schema, route).toEqual({ type: 'integer', minimum: 1 });
    }
    expect(Object.keys(doc.paths['/v1/webhooks/{id}'].delete.responses)).toEqual(expect.arrayContaining(['204', '404']));
    expect(doc.paths['/admin/webhooks/dead-letter'].get.responses['200'].content['application/json'].schema).toEqual({
      $ref: '#/components/schemas/DeadLetterPage',
    });
    expect(doc.paths['/admin/webhooks/dead-letter/{jobId}/replay'].post.responses).toHaveProperty('202');
    const delivery = doc.paths['/v1/webhooks'].post.callbacks.webhookEvent['{$request.body#/url}'].post;
    expect(delivery.parameters.map((h: Json) => h.name)).toEqual(['webhook-id', 'webhook-timestamp', 'webhook-signature']);
    expect(delivery.requestBody.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/WebhookEvent' });
    expect(schemas.WebhookEvent.properties.data.properties).not.toHaveProperty('prompt');
    expect(schemas.JobSubmission.properties.image.description).toMatch(/data: URL.*PNG, JPEG or WebP/);
    // Nullable enums list null (OpenAPI 3.0: nullable: true, and null in the enum).
    expect(schemas.Verdict.properties.decision).toMatchObject({ nullable: true, enum: ['pass', 'aligned', 'blocked', null] });
    // A description on every field.
    for (const [path, schema] of objectSchemas(schemas, '#/components/schemas')) {
      for (const [field, property] of Object.entries(schema.properties as Json)) {
        expect(property.description ?? (property.$ref ? 'ref' : undefined), `${path}.${field}`).toEqual(expect.any(String));
      }
    }
  });

  it('passes redocly lint with no errors', async () => {
    const file = join(dir, 'openapi.json');
    writeFileSync(file, JSON.stringify(doc));
    const out = await run(bin('redocly'), ['lint', file, '--format', 'stylish'], {
      env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_COLOR: '1' },
    }).catch((err: { stdout: string; stderr: string }) => {
      throw new Error(`redocly lint failed:\n${err.stdout}\n${err.stderr}`);
    });
    expect(`${out.stdout}${out.stderr}`).not.toMatch(/\berror\b/i);
  }, 120_000);

  it('the validator flags what the document does not declare', () => {
    expect(responseProblems(doc as never, 'GET', '/v1/jobs/abcd1234', 200, 'application/json', { id: 'abcd1234' })).not.toEqual([]);
    expect(responseProblems(doc as never, 'GET', '/v1/jobs/abcd1234', 418, 'application/json', {})[0]).toMatch(/does not declare/);
    expect(responseProblems(doc as never, 'GET', '/v1/jobs/abcd1234', 404, 'application/json', { error: { code: 'not_found', message: 'x' } })).toEqual([]);
    expect(responseProblems(doc as never, 'GET', '/v1/jobs/abcd1234', 404, 'application/json', { error: { code: 'no_such_code', message: 'x' } })).not.toEqual(
      [],
    );
  });

  it('bodies are strict: unknown fields are refused with unknown_field, in JSON, batch items, the batch wrapper and multipart', async () => {
    const api = client(p.url, p.apiKey);
    const png = await solidPng(16, 16);
    const cases: [string, unknown, string][] = [
      ['/v1/jobs', { prompt: 'q', answer: 'a', propmt: 'x' }, 'propmt'],
      ['/v1/batches', { items: [{ prompt: 'q', answer: 'a' }], extra: 1 }, 'extra'],
      [
        '/v1/batches',
        {
          items: [
            { prompt: 'q', answer: 'a' },
            { prompt: 'q', answer: 'a', file: 'x' },
          ],
        },
        'file',
      ],
      ['/v1/batches', [{ prompt: 'q', answer: 'a', colour: 'red' }], 'colour'],
      ['/v1/jobs', form({ prompt: 'q', answer: 'a', extra: 'x' }), 'extra'],
      ['/v1/jobs', form({ prompt: 'q' }, { picture: { bytes: png } }), 'picture'],
      ['/v1/batches', form({ items: JSON.stringify([{ prompt: 'q', answer: 'a' }]), note: 'x' }), 'note'],
      ['/v1/batches', form({ items: JSON.stringify([{ prompt: 'q', answer: 'a', image: 'abc' }]) }), 'image'],
    ];
    for (const [path, body, field] of cases) {
      const res = await api.post(path, body);
      expect(res.status, `${path} ${field}: ${JSON.stringify(res.body)}`).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'unknown_field', details: { field } });
    }
  });

  it('a typed client generated from the served document compiles with tsc --strict and drives jobs and batches to verdicts', async () => {
    const ast = await openapiTS(doc as never);
    writeFileSync(join(dir, 'schema.d.ts'), astToString(ast));
    writeFileSync(join(dir, 'client.ts'), CLIENT_PROGRAM);
    await run(
      bin('tsc'),
      [
        '--strict',
        '--target',
        'es2022',
        '--module',
        'commonjs',
        '--moduleResolution',
        'node10',
        '--esModuleInterop',
        '--types',
        'node',
        '--outDir',
        join(dir, 'out'),
        join(dir, 'client.ts'),
      ],
      { cwd: dir },
    ).catch((err: { stdout: string; stderr: string }) => {
      throw new Error(`tsc --strict failed:\n${err.stdout}\n${err.stderr}`);
    });
    const png = (await solidPng(32, 32, [200, 40, 40])).toString('base64');
    const { stdout } = await run(process.execPath, [join(dir, 'out', 'client.js'), p.url, p.apiKey, png], { timeout: 120_000 });
    const result = JSON.parse(stdout);
    expect(result.single).toMatchObject({ status: 'succeeded', original_answer: 'A hydraulic press.', metadata: { line: 'A' } });
    expect(result.jsonBatch.map((v: Json) => v.status)).toEqual(['succeeded', 'succeeded']);
    expect(result.jsonBatch[1].image_sha256).toEqual(expect.any(String));
    expect(result.multipartBatch.map((v: Json) => v.status)).toEqual(['succeeded', 'succeeded']);
    expect(result.multipartBatch.map((v: Json) => v.image_sha256 !== null)).toEqual([true, false]);
    expect(result).toMatchObject({ unknownStatus: 400, unknownCode: 'unknown_field' });
    for (const v of [result.single, ...result.jsonBatch, ...result.multipartBatch]) {
      expect(responseProblems(doc as never, 'GET', `/v1/jobs/${v.id}`, 200, 'application/json', v)).toEqual([]);
    }
  }, 240_000);
});
