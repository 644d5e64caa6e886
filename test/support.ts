import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { Queue } from 'bullmq';
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

/** A small HTTP client for the intake API: JSON in, JSON (or text) out. */
export function client(baseUrl: string, apiKey?: string) {
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
    return { status: res.status, headers: res.headers, body: parsed };
  };
  return {
    get: (path: string, headers?: Record<string, string>) => call('GET', path, undefined, headers),
    post: (path: string, body?: unknown, headers?: Record<string, string>) => call('POST', path, body, headers),
  };
}

export async function solidPng(width: number, height: number, rgb: [number, number, number] = [120, 130, 140]): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } }).png().toBuffer();
}

/** A PNG of roughly `bytes` bytes (random pixels do not compress). */
export async function noisyPng(bytes: number): Promise<Buffer> {
  const side = Math.ceil(Math.sqrt(bytes / 3));
  const raw = Buffer.alloc(side * side * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 2654435761) >>> 24;
  return sharp(raw, { raw: { width: side, height: side, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer();
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
