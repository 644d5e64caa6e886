import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { Queue } from 'bullmq';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { DEFAULT_REDIS_URL, redisOptions } from '@libs/queue';
import type { Stage } from '@libs/contracts';

export const REDIS_URL = process.env.REDIS_URL || DEFAULT_REDIS_URL;

/**
 * The pipeline tests run on the random-weight tiny packs (fast, and they never emit eos, so a generation lasts
 * as long as a test needs) with ETA's reference thresholds, not the product's FactorySafe defaults.
 */
export const TINY_PACKS_ENV = {
  VLM_PACK_DIR: 'models/tiny-vlm',
  CLIP_PACK_DIR: 'models/tiny-clip',
  REWARD_PACK_DIR: 'models/tiny-guard',
  ETA_TAU_PRE: '0.16',
  ETA_TAU_POST: '0.06',
} as const;

/** The tiny packs with tau_pre 0 (every image flagged) and tau_post 1000 (every answer): each job runs all three stages. */
export const FLAG_ALL_ENV = {
  REDIS_URL,
  ...TINY_PACKS_ENV,
  ETA_TAU_PRE: '0',
  ETA_TAU_POST: '1000',
  ALIGNER_N: '3',
  ALIGNER_MAX_TOTAL_TOKENS: '24',
  GENERATOR_MAX_NEW_TOKENS: '16',
};

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 60_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export interface Reply<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

type OpenApiDocument = { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>> };

const documents = new Map<string, Promise<OpenApiDocument>>();
const validators = new WeakMap<OpenApiDocument, Ajv>();

/** The document a server serves, fetched once per base URL. */
export function servedDocument(baseUrl: string): Promise<OpenApiDocument> {
  let doc = documents.get(baseUrl);
  if (!doc) {
    doc = fetch(`${baseUrl}/openapi.json`).then(async (res) => {
      if (res.status !== 200) throw new Error(`GET /openapi.json answered ${res.status}`);
      return (await res.json()) as OpenApiDocument;
    });
    documents.set(baseUrl, doc);
    doc.catch(() => documents.delete(baseUrl));
  }
  return doc;
}

/** The documented path template a request path matches (`/v1/jobs/abc` -> `/v1/jobs/{id}`), or undefined. */
export function documentedPath(doc: OpenApiDocument, path: string): string | undefined {
  const bare = path.split('?')[0];
  return Object.keys(doc.paths).find((template) => new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(bare));
}

/**
 * Checks one response against the document: the route and method are documented, the status is declared, and the
 * body validates (ajv) against the schema declared for that status and content type. Returns what is wrong, or [].
 * Paths the document does not describe (the docs UI, the queue dashboard) are not checked.
 */
export function responseProblems(doc: OpenApiDocument, method: string, path: string, status: number, contentType: string, body: unknown): string[] {
  const template = documentedPath(doc, path);
  if (!template) return [];
  const operation = doc.paths[template][method.toLowerCase()];
  if (!operation) return [`${method} ${template} is not documented`];
  const response = operation.responses[String(status)];
  if (!response)
    return [`${method} ${template} answered ${status}, which the document does not declare (it declares ${Object.keys(operation.responses).join(', ')})`];
  const type = contentType.split(';')[0].trim().toLowerCase();
  if (!response.content) return [];
  if (!response.content[type])
    return [`${method} ${template} ${status} answered ${type || 'no content type'}; the document declares ${Object.keys(response.content).join(', ')}`];
  let ajv = validators.get(doc);
  if (!ajv) {
    ajv = new Ajv({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addFormat('binary', true);
    ajv.addSchema(doc as object, 'openapi');
    validators.set(doc, ajv);
  }
  const pointer = ['paths', template, method.toLowerCase(), 'responses', String(status), 'content', type, 'schema']
    .map((part) => part.replace(/~/g, '~0').replace(/\//g, '~1'))
    .join('/');
  const validate = ajv.getSchema(`openapi#/${pointer}`)!;
  if (validate(body)) return [];
  return (validate.errors ?? []).map((e) => `${method} ${template} ${status}: ${e.instancePath || '(body)'} ${e.message} ${JSON.stringify(e.params)}`);
}

export interface Reply<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

/**
 * A small HTTP client for the intake API: JSON in, JSON (or text) out. Every response to a documented route is
 * checked against the served OpenAPI document (status declared, body valid); `validate: false` turns that off.
 */
export function client(baseUrl: string, apiKey?: string, options: { validate?: boolean } = {}) {
  const validate = options.validate ?? true;
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> => {
    const h: Record<string, string> = { ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}), ...headers };
    let payload: RequestInit['body'];
    if (body instanceof FormData) payload = body;
    else if (typeof body === 'string') payload = body;
    else if (body !== undefined) {
      payload = JSON.stringify(body);
      h['content-type'] ??= 'application/json';
    }
    const res = await fetch(`${baseUrl}${path}`, { method, headers: h, body: payload });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* text body */
    }
    if (validate && path !== '/openapi.json') {
      const problems = responseProblems(await servedDocument(baseUrl), method, path, res.status, res.headers.get('content-type') ?? '', parsed);
      if (problems.length) throw new Error(`response does not match the OpenAPI document:\n${problems.join('\n')}\nbody: ${text.slice(0, 500)}`);
    }
    return { status: res.status, headers: res.headers, body: parsed };
  };
  return {
    get: (path: string, headers?: Record<string, string>) => call('GET', path, undefined, headers),
    post: (path: string, body?: unknown, headers?: Record<string, string>) => call('POST', path, body, headers),
    delete: (path: string, headers?: Record<string, string>) => call('DELETE', path, undefined, headers),
  };
}

export async function solidPng(width: number, height: number, rgb: [number, number, number] = [120, 130, 140]): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
    .png()
    .toBuffer();
}

/** A PNG of roughly `bytes` bytes (random pixels do not compress). */
export async function noisyPng(bytes: number): Promise<Buffer> {
  const side = Math.ceil(Math.sqrt(bytes / 3));
  const raw = Buffer.alloc(side * side * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 2654435761) >>> 24;
  return sharp(raw, { raw: { width: side, height: side, channels: 3 } })
    .png({ compressionLevel: 0 })
    .toBuffer();
}

/** Job counts of every stage queue under a prefix, all states that mean "enqueued". */
export async function queuedJobs(prefix: string, stages: Stage[] = ['generate', 'evaluate', 'align']): Promise<number> {
  let total = 0;
  for (const stage of stages) {
    const queue = new Queue(stage, { connection: redisOptions(REDIS_URL), prefix });
    const counts = await queue.getJobCounts('wait', 'prioritized', 'delayed', 'active', 'completed', 'failed');
    total += Object.values(counts).reduce((a, b) => a + b, 0);
    await queue.close();
  }
  return total;
}

export function form(fields: Record<string, string>, files: Record<string, { bytes: Uint8Array; name?: string; type?: string }> = {}): FormData {
  const f = new FormData();
  for (const [k, v] of Object.entries(fields)) f.append(k, v);
  for (const [k, file] of Object.entries(files)) f.append(k, new Blob([file.bytes], { type: file.type ?? 'image/png' }), file.name ?? `${k}.png`);
  return f;
}
