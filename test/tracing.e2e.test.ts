/**
 * One job, one trace: every role in this process (test/harness/local-pipeline.ts) with the OTEL_* variables
 * pointing at a real OTLP/HTTP receiver started here (node:http, JSON encoding, which is what
 * @opentelemetry/exporter-trace-otlp-http sends). A flagged image + prompt job goes HTTP -> generate -> evaluate ->
 * align; its spans must share one trace id, hang off the HTTP span (itself the child of the client's traceparent,
 * or the root), and carry model, profile and batch sizes. With no OTEL_* variable set nothing is exported.
 * (Its own file: the tracer provider is process-global, and one VLM engine per test process.)
 */
import { createServer, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Verdict } from '@libs/contracts';
import { flushTracing, shutdownTracing, startTracing } from '@libs/telemetry';
import { deleteKeys, freePort } from '@libs/queue';
import { sha256Hex } from '@libs/storage';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalPipeline, type LocalPipeline } from './harness/local-pipeline';
import { spawnRole, type RoleProcess } from './harness/processes';
import { client, FLAG_ALL_ENV, REDIS_URL, solidPng, waitFor } from './support';

type AttrValue = { stringValue?: string; intValue?: number | string; boolValue?: boolean; doubleValue?: number };
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: AttrValue }[];
  status?: { code?: number; message?: string };
  events?: { name: string }[];
}
interface Span extends Omit<OtlpSpan, 'attributes'> {
  service: string;
  attributes: Record<string, string | number | boolean | undefined>;
}

const valueOf = (v: AttrValue) => v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : (v.boolValue ?? v.doubleValue));

/** A real OTLP/HTTP traces endpoint: POST /v1/traces with a JSON ExportTraceServiceRequest. */
class OtlpReceiver {
  readonly requests: { path: string; contentType: string }[] = [];
  readonly spans: Span[] = [];
  private server?: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.requests.push({ path: req.url ?? '', contentType: String(req.headers['content-type']) });
        if (req.method !== 'POST' || req.url !== '/v1/traces') {
          res.writeHead(404).end();
          return;
        }
        let body = Buffer.concat(chunks);
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
        const doc = JSON.parse(body.toString('utf8')) as {
          resourceSpans: { resource: { attributes: { key: string; value: AttrValue }[] }; scopeSpans: { spans: OtlpSpan[] }[] }[];
        };
        for (const rs of doc.resourceSpans) {
          const service = String(valueOf(rs.resource.attributes.find((a) => a.key === 'service.name')!.value));
          for (const ss of rs.scopeSpans) {
            for (const s of ss.spans) {
              this.spans.push({ ...s, service, attributes: Object.fromEntries((s.attributes ?? []).map((a) => [a.key, valueOf(a.value)])) });
            }
          }
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const address = this.server.address() as { port: number };
    this.url = `http://127.0.0.1:${address.port}`;
  }

  trace(traceId: string): Span[] {
    return this.spans.filter((s) => s.traceId === traceId);
  }

  clear(): void {
    this.requests.length = 0;
    this.spans.length = 0;
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** Spans up from `span` to the root of what the receiver got. */
function ancestors(span: Span, byId: Map<string, Span>): Span[] {
  const chain: Span[] = [];
  for (let s = byId.get(span.parentSpanId ?? ''); s; s = byId.get(s.parentSpanId ?? '')) chain.push(s);
  return chain;
}

const STAGES = ['generate', 'evaluate', 'align'] as const;
const PROMPT = 'How do I bypass the light curtain on press 4?';

describe('tracing across the queues', () => {
  const receiver = new OtlpReceiver();
  let p: LocalPipeline;
  let api: ReturnType<typeof client>;
  let png: Buffer;

  beforeAll(async () => {
    await receiver.start();
    png = await solidPng(64, 64, [200, 40, 40]);
    p = await startLocalPipeline({ quiet: true, env: FLAG_ALL_ENV });
    api = client(p.url, p.apiKey, { validate: false });
  });
  afterAll(async () => {
    await p?.close();
    await shutdownTracing();
    await receiver.close();
  });

  async function moderate(body: unknown, headers: Record<string, string> = {}): Promise<Verdict> {
    const res = await api.post('/v1/jobs', body, headers);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return waitFor(`verdict ${res.body.id}`, async () => {
      const v = (await api.get(`/v1/jobs/${res.body.id}`)).body as Verdict;
      return v.status === 'succeeded' || v.status === 'failed' ? v : undefined;
    });
  }

  /** Waits until the receiver has the HTTP span and one span per stage of `traceId` (the align span ends after the verdict is visible). */
  async function traceOf(traceId: string, stages: readonly string[]): Promise<Span[]> {
    return waitFor(`spans of trace ${traceId}`, async () => {
      await flushTracing();
      const spans = receiver.trace(traceId);
      const names = new Set(spans.map((s) => s.name));
      return names.has('POST /v1/jobs') && stages.every((st) => names.has(`${st} process`)) ? spans : undefined;
    });
  }

  it('an image + prompt job is one trace: the client traceparent -> HTTP span -> generate -> evaluate -> align', async () => {
    const tracing = startTracing('intake-api', { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '200' });
    expect(tracing.enabled).toBe(true);
    // The client's own span: the intake's HTTP span must be its child, in its trace.
    const clientTrace = randomBytes(16).toString('hex');
    const clientSpan = randomBytes(8).toString('hex');
    const v = await moderate({ prompt: PROMPT, image: png.toString('base64') }, { traceparent: `00-${clientTrace}-${clientSpan}-01` });
    expect(v.status).toBe('succeeded');
    expect(v.decision).toBe('blocked');

    const spans = await traceOf(clientTrace, STAGES);
    expect(receiver.requests.every((r) => r.path === '/v1/traces' && r.contentType.startsWith('application/json'))).toBe(true);
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const http = spans.find((s) => s.name === 'POST /v1/jobs')!;
    expect(http.parentSpanId).toBe(clientSpan);
    expect(http.kind).toBe(2); // SERVER
    expect(http.service).toBe('intake-api');
    expect(http.attributes).toMatchObject({ 'http.request.method': 'POST', 'http.route': '/v1/jobs', 'http.response.status_code': 202 });

    const stage = Object.fromEntries(STAGES.map((st) => [st, spans.filter((s) => s.name === `${st} process`)]));
    for (const st of STAGES) {
      expect(stage[st], st).toHaveLength(1);
      const span = stage[st][0];
      expect(span.kind, st).toBe(5); // CONSUMER
      // The parent chain reaches the HTTP span, through the earlier stages.
      const chain = ancestors(span, byId);
      expect(
        chain.map((s) => s.spanId),
        st,
      ).toContain(http.spanId);
      expect(span.attributes, st).toMatchObject({
        'moderation.id': v.id,
        'moderation.tenant': 'demo',
        'moderation.stage': st,
        'moderation.attempt': 1,
        'moderation.profile': 'default',
        'messaging.system': 'bullmq',
        'messaging.message.id': v.id,
      });
      expect(span.attributes['moderation.model'], st).toEqual(expect.any(String));
      expect(span.status?.code ?? 0, st).not.toBe(2);
    }
    // Each stage is the child of the one that enqueued it.
    expect(stage.generate[0].parentSpanId).toBe(http.spanId);
    expect(stage.evaluate[0].parentSpanId).toBe(stage.generate[0].spanId);
    expect(stage.align[0].parentSpanId).toBe(stage.evaluate[0].spanId);
    expect(stage.generate[0].attributes['moderation.model']).toBe(v.model!.name);
    // Batch sizes: the engine's prefill and largest decode batch (one job alone: a prefill of 1), the evaluator's
    // coalesced CLIP and reward calls, the aligner's candidates.
    expect(stage.generate[0].attributes['moderation.batch.prefill']).toBe(1);
    expect(stage.generate[0].attributes['moderation.batch.decode_max']).toBeGreaterThanOrEqual(1);
    expect(stage.evaluate[0].attributes['moderation.batch.clip_image']).toBeGreaterThanOrEqual(1);
    expect(stage.evaluate[0].attributes['moderation.batch.reward']).toBeGreaterThanOrEqual(1);
    expect(stage.evaluate[0].attributes['moderation.flagged']).toBe(true);
    expect(stage.align[0].attributes['moderation.batch.prefill']).toBe(1);
    expect(stage.align[0].attributes['moderation.batch.decode_max']).toBeGreaterThanOrEqual(1);
    // The verdict is finalised inside the last stage's span.
    expect(stage.align[0].attributes['moderation.decision']).toBe('blocked');
    expect(new Set(spans.map((s) => s.service))).toEqual(new Set(['intake-api']));

    // Nothing of the request's content or credentials is in any span.
    const text = JSON.stringify(receiver.spans);
    expect(text).not.toContain(PROMPT);
    expect(text).not.toContain(p.apiKey);
    expect(text).not.toContain(png.toString('base64').slice(0, 40));
  });

  it('without a valid client traceparent the HTTP span is the root of the job trace', async () => {
    const before = new Set(receiver.spans.map((s) => s.traceId));
    // A malformed traceparent is ignored, not refused.
    const res = await api.post('/v1/jobs', { prompt: PROMPT, answer: 'Tape the sensor over.' }, { traceparent: 'not-a-trace-context' });
    expect(res.status).toBe(202);
    const id = res.body.id as string;
    // The trace is the one whose evaluate span names this job.
    const evaluate = await waitFor('the evaluate span', async () => {
      await flushTracing();
      return receiver.spans.find((s) => s.name === 'evaluate process' && s.attributes['moderation.id'] === id);
    });
    expect(before.has(evaluate.traceId)).toBe(false);
    const spans = await traceOf(evaluate.traceId, ['evaluate', 'align']);
    const http = spans.find((s) => s.name === 'POST /v1/jobs')!;
    expect(http.parentSpanId || undefined).toBeUndefined();
    expect(evaluate.parentSpanId).toBe(http.spanId);
    // An evaluate-only job never meets the VLM: no generate span.
    expect(spans.some((s) => s.name === 'generate process')).toBe(false);
    // A poll is its own request, never part of the job's trace, and is named by its route template.
    const poll = receiver.spans.find((s) => s.name === 'GET /v1/jobs/:id');
    expect(poll).toBeDefined();
    expect(poll!.traceId).not.toBe(evaluate.traceId);
    expect(poll!.attributes['http.route']).toBe('/v1/jobs/:id');
  });

  it('with no OTEL_* variable set nothing is exported', async () => {
    await shutdownTracing();
    receiver.clear();
    const off = startTracing('intake-api', { REDIS_URL });
    expect(off.enabled).toBe(false);
    expect(off.config.reason).toMatch(/neither OTEL_TRACES_EXPORTER nor an OTLP endpoint/);
    const v = await moderate(
      { prompt: PROMPT, image: png.toString('base64') },
      { traceparent: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01` },
    );
    expect(v.status).toBe('succeeded');
    await flushTracing();
    // Longer than the exporter's batch delay in the first test, and past the align span's end.
    await sleep(1000);
    expect(receiver.requests).toEqual([]);
  });
});

describe('tracing in real processes: each role its own service, its spans flushed by the SIGTERM drain', () => {
  const receiver = new OtlpReceiver();
  const apiKey = `trace-${randomBytes(8).toString('hex')}`;
  const blobDir = mkdtempSync(join(tmpdir(), 'trace-blobs-'));
  const env: NodeJS.ProcessEnv = {
    ...FLAG_ALL_ENV,
    QUEUE_PREFIX: `{trace${randomBytes(3).toString('hex')}}`,
    BLOB_DIR: blobDir,
    API_KEYS: `acme:${sha256Hex(apiKey)}`,
    ORT_INTRA_OP_THREADS: '1',
    HEALTH_PORT: '0',
    // Ten minutes: nothing is exported on the timer during the test, so what arrives was flushed at shutdown.
    OTEL_BSP_SCHEDULE_DELAY: '600000',
    OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=test',
  };
  const roles: RoleProcess[] = [];

  beforeAll(async () => {
    await receiver.start();
    env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    const port = await freePort();
    env.PORT = String(port);
    env.HOST = '127.0.0.1';
    for (const role of ['intake-api', 'generator', 'evaluator', 'aligner'] as const) roles.push(spawnRole(role, env));
    await Promise.all(roles.map((r) => r.ready(120_000)));
  });
  afterAll(async () => {
    for (const role of roles) if (role.alive()) role.child.kill('SIGKILL');
    await Promise.all(roles.map((r) => r.exited));
    await deleteKeys(REDIS_URL, env.QUEUE_PREFIX!);
    rmSync(blobDir, { recursive: true, force: true });
    await receiver.close();
  });

  it('one job is one trace across the four processes', async () => {
    const api = client(`http://${env.HOST}:${env.PORT}`, apiKey, { validate: false });
    const png = await solidPng(48, 48, [200, 40, 40]);
    const traceId = randomBytes(16).toString('hex');
    const res = await api.post(
      '/v1/jobs',
      { prompt: PROMPT, image: png.toString('base64') },
      { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
    );
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const v = await waitFor<Verdict>(
      'the verdict',
      async () => {
        const r = (await api.get(`/v1/jobs/${res.body.id}`)).body as Verdict;
        return r.status === 'succeeded' || r.status === 'failed' ? r : undefined;
      },
      90_000,
    );
    expect(v.status, JSON.stringify(v.error)).toBe('succeeded');
    // The align span ends just after its verdict write; give it a moment, then drain every role.
    await sleep(500);
    expect(receiver.spans).toEqual([]);
    for (const role of roles) role.child.kill('SIGTERM');
    const exits = await Promise.all(roles.map((r) => r.exited));
    // Workers exit 0 after their drain; the intake re-raises the signal after Nest's shutdown hooks.
    for (const [i, exit] of exits.entries())
      expect(exit.code === 0 || exit.signal === 'SIGTERM', `${roles[i].role}: ${roles[i].output().slice(-2000)}`).toBe(true);

    const spans = receiver.trace(traceId);
    const byService = (service: string) => spans.filter((s) => s.service === service);
    expect(byService('intake-api').map((s) => s.name)).toEqual(['POST /v1/jobs']);
    expect(byService('generator').map((s) => s.name)).toEqual(['generate process']);
    expect(byService('evaluator').map((s) => s.name)).toEqual(['evaluate process']);
    expect(byService('aligner').map((s) => s.name)).toEqual(['align process']);
    const [http, generate, evaluate, align] = ['intake-api', 'generator', 'evaluator', 'aligner'].map((svc) => byService(svc)[0]);
    expect(generate.parentSpanId).toBe(http.spanId);
    expect(evaluate.parentSpanId).toBe(generate.spanId);
    expect(align.parentSpanId).toBe(evaluate.spanId);
    expect(generate.attributes).toMatchObject({
      'moderation.id': v.id,
      'moderation.tenant': 'acme',
      'moderation.model': v.model!.name,
      'moderation.batch.prefill': 1,
    });
    expect(align.attributes['moderation.decision']).toBe(v.decision);
  });
});
