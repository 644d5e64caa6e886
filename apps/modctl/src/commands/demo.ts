/**
 * `npm run demo`: every role against REDIS_URL (a private redis-server when nothing answers and one is on the
 * PATH), the shipped sample batch posted through the HTTP API as multipart, polled, and printed as a table.
 * The roles run in this process as separate Nest apps; the VLM engines run on worker threads.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Redis } from 'ioredis';
import type { BatchAccepted, BatchStatus, Verdict, VerdictPage } from '@libs/contracts';
import { DEFAULT_REDIS_URL, redisOptions } from '@libs/queue';
import { sha256Hex } from '@libs/storage';
import { createIntakeApp } from '../../../intake-api/src/app';
import { GeneratorModule } from '../../../generator/src/generator.module';
import { EvaluatorModule } from '../../../evaluator/src/evaluator.module';
import { AlignerModule } from '../../../aligner/src/aligner.module';

export const summary = 'run every role locally, moderate the sample batch through the HTTP API, print verdicts';

export type Role = 'intake' | 'generator' | 'evaluator' | 'aligner';

export interface LocalPipeline {
  url: string;
  apiKey: string;
  adminKey: string;
  env: NodeJS.ProcessEnv;
  blobDir: string;
  apps: Partial<Record<Role, INestApplicationContext>>;
  /** Starts a worker role later (e.g. after jobs were queued), under the same prefix and blob directory. */
  startRole(role: Exclude<Role, 'intake'>): Promise<INestApplicationContext>;
  /** Closes the roles (workers drain first), then deletes every key under the pipeline's prefix. */
  close(options?: { keepKeys?: boolean }): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolvePort(port));
    });
  });
}

async function redisAnswers(url: string): Promise<boolean> {
  const redis = new Redis({ ...redisOptions(url), lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

/** A throwaway redis-server (no persistence) on a free port. */
export async function startPrivateRedis(
  options: { /** Reuse a port (e.g. to restart a stopped server). */ port?: number; /** Extra redis-server arguments, e.g. ['--maxmemory', '4mb']. */ args?: string[] } = {},
): Promise<{ url: string; port: number; process: ChildProcess; stop(): Promise<void> }> {
  const port = options.port ?? (await freePort());
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction', ...(options.args ?? [])];
  const child = spawn('redis-server', args, {
    stdio: 'ignore',
  });
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 100 && !(await redisAnswers(url)); i++) await new Promise((r) => setTimeout(r, 50));
  return {
    url,
    port,
    process: child,
    stop: () =>
      new Promise<void>((done) => {
        if (child.exitCode !== null) return done();
        child.once('exit', () => done());
        child.kill('SIGCONT'); // a server a test paused (SIGSTOP) handles SIGTERM only once it runs again
        child.kill('SIGTERM');
      }),
  };
}

/** Deletes every key under a prefix (SCAN, never KEYS: the Redis may be shared). */
export async function deleteKeys(redisUrl: string, prefix: string): Promise<void> {
  const redis = new Redis(redisOptions(redisUrl));
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix.replace(/([*?[\]])/g, '\\$1')}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

const ROLE_MODULES = {
  generator: (env: NodeJS.ProcessEnv) => GeneratorModule.register(env),
  evaluator: (env: NodeJS.ProcessEnv) => EvaluatorModule.register(env),
  aligner: (env: NodeJS.ProcessEnv) => AlignerModule.register(env),
};

/**
 * Starts the chosen roles in this process under their own key prefix, blob directory and API keys. Used by the
 * demo, the end-to-end tests and the pipeline benchmark.
 */
export async function startLocalPipeline(
  options: { env?: NodeJS.ProcessEnv; roles?: Role[]; quiet?: boolean; /** More tenants: name -> plain key. */ tenants?: Record<string, string> } = {},
): Promise<LocalPipeline> {
  const roles = options.roles ?? ['intake', 'generator', 'evaluator', 'aligner'];
  const apiKey = `demo-${randomBytes(16).toString('hex')}`;
  const adminKey = `admin-${randomBytes(16).toString('hex')}`;
  const blobDir = mkdtempSync(join(tmpdir(), 'mod-blobs-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    QUEUE_PREFIX: `{demo${randomBytes(4).toString('hex')}}`,
    BLOB_DIR: blobDir,
    API_KEYS: [`demo:${sha256Hex(apiKey)}`, ...Object.entries(options.tenants ?? {}).map(([name, key]) => `${name}:${sha256Hex(key)}`)].join(','),
    ADMIN_API_KEY_SHA256: sha256Hex(adminKey),
    ...options.env,
  };
  const logger = options.quiet ? (['error'] as const) : (['error', 'warn', 'log'] as const);
  const apps: LocalPipeline['apps'] = {};
  let url = '';
  try {
    // Workers first: their engines load while nothing waits on them yet.
    await Promise.all(
      (['generator', 'evaluator', 'aligner'] as const)
        .filter((r) => roles.includes(r))
        .map(async (role) => {
          apps[role] = await NestFactory.createApplicationContext(ROLE_MODULES[role](env), { logger: [...logger], abortOnError: false });
        }),
    );
    if (roles.includes('intake')) {
      const app: NestFastifyApplication = await createIntakeApp({ env, logger: [...logger] });
      await app.listen(0, '127.0.0.1');
      apps.intake = app;
      url = await app.getUrl();
      url = url.replace('[::1]', '127.0.0.1');
    }
  } catch (err) {
    await Promise.allSettled(Object.values(apps).map((a) => a!.close()));
    throw err;
  }
  return {
    url,
    apiKey,
    adminKey,
    env,
    blobDir,
    apps,
    async startRole(role) {
      const app = await NestFactory.createApplicationContext(ROLE_MODULES[role](env), { logger: [...logger], abortOnError: false });
      apps[role] = app;
      return app;
    },
    async close({ keepKeys = false } = {}) {
      // Workers drain before the intake closes; each closes its own queues and Redis connections.
      await Promise.allSettled(Object.entries(apps).filter(([r]) => r !== 'intake').map(([, a]) => a!.close()));
      await apps.intake?.close();
      if (!keepKeys) await deleteKeys(env.REDIS_URL || DEFAULT_REDIS_URL, env.QUEUE_PREFIX!);
      rmSync(blobDir, { recursive: true, force: true });
    },
  };
}

interface SampleItem {
  image?: string;
  prompt: string;
  expect?: string;
  answer?: string;
}

export function readSampleBatch(dir: string): SampleItem[] {
  return readFileSync(join(dir, 'batch.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as SampleItem);
}

/** The sample batch as one multipart request: an `items` field and one file per item, named in `file`. */
export function sampleBatchForm(dir: string, items: SampleItem[]): FormData {
  const form = new FormData();
  form.append(
    'items',
    JSON.stringify(
      items.map((item, i) => ({
        prompt: item.prompt,
        answer: item.answer,
        metadata: { sample: item.image ?? null, expect: item.expect ?? null },
        file: item.image ? `image_${i}` : undefined,
      })),
    ),
  );
  items.forEach((item, i) => {
    if (item.image) form.append(`image_${i}`, new Blob([readFileSync(join(dir, item.image))], { type: 'image/png' }), item.image);
  });
  return form;
}

export async function pollBatch(url: string, apiKey: string, batchId: string, timeoutMs: number): Promise<Verdict[]> {
  const headers = { authorization: `Bearer ${apiKey}` };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = (await (await fetch(`${url}/v1/batches/${batchId}`, { headers })).json()) as BatchStatus;
    if (status.done) break;
    if (Date.now() > deadline) throw new Error(`batch ${batchId} not done after ${timeoutMs} ms: ${JSON.stringify(status.counts)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const verdicts: Verdict[] = [];
  let cursor: string | null = null;
  do {
    const page = (await (await fetch(`${url}/v1/batches/${batchId}/verdicts?limit=50${cursor ? `&cursor=${cursor}` : ''}`, { headers })).json()) as VerdictPage;
    verdicts.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return verdicts;
}

const excerpt = (s: string | null | undefined, n: number) => {
  const flat = (s ?? '').replace(/\s+/g, ' ').trim();
  return flat.length > n ? `${flat.slice(0, n - 1)}…` : flat;
};
const fmt = (x: number | null | undefined) => (x === null || x === undefined ? '-' : x.toFixed(3));

export function verdictTable(verdicts: Verdict[]): string {
  const rows = verdicts.map((v) => [
    // The id's last 8 hex digits, plus the item index for batch jobs (`bat_<hex>_<index>`).
    v.id.replace(/^.*?([0-9a-f]{8}(_\d+)?)$/, '$1'),
    excerpt(v.prompt, 34),
    v.status === 'succeeded' ? (v.decision ?? '-') : `${v.status}:${v.error?.code ?? ''}`,
    v.flagged === null ? '-' : String(v.flagged),
    fmt(v.scores?.image_risk),
    fmt(v.scores?.answer_safety),
    excerpt(v.final_answer, 40),
    String(v.timings.total_ms ?? '-'),
  ]);
  const head = ['id', 'prompt', 'decision', 'flagged', 'image_risk', 'answer_safety', 'final answer', 'ms'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const started = Date.now();
  const samplesDir = resolve(argv.find((a) => !a.startsWith('-')) ?? 'data/factorysafe/demo');
  let redisUrl = process.env.REDIS_URL || DEFAULT_REDIS_URL;
  let privateRedis: Awaited<ReturnType<typeof startPrivateRedis>> | undefined;
  if (!(await redisAnswers(redisUrl))) {
    console.log(`no Redis answers at ${redisUrl}; starting a private redis-server`);
    privateRedis = await startPrivateRedis().catch((err: Error) => {
      throw new Error(`no Redis at ${redisUrl} and redis-server could not be started (${err.message}); set REDIS_URL`);
    });
    redisUrl = privateRedis.url;
  }
  console.log(`Redis: ${redisUrl}`);
  const pipeline = await startLocalPipeline({ env: { REDIS_URL: redisUrl }, quiet: !argv.includes('--verbose') });
  try {
    console.log(`roles up after ${Date.now() - started} ms; intake at ${pipeline.url}`);
    const items = readSampleBatch(samplesDir);
    const res = await fetch(`${pipeline.url}/v1/batches`, {
      method: 'POST',
      headers: { authorization: `Bearer ${pipeline.apiKey}` },
      body: sampleBatchForm(samplesDir, items),
    });
    if (res.status !== 202) throw new Error(`batch submission answered ${res.status}: ${await res.text()}`);
    const batch = (await res.json()) as BatchAccepted;
    console.log(`submitted batch ${batch.id} with ${batch.items} items; polling ${batch.poll_url}`);
    const verdicts = await pollBatch(pipeline.url, pipeline.apiKey, batch.id, 150_000);
    console.log(`\n${verdictTable(verdicts)}\n`);
    const counts = verdicts.reduce<Record<string, number>>((acc, v) => ((acc[v.decision ?? v.status] = (acc[v.decision ?? v.status] ?? 0) + 1), acc), {});
    console.log(`decisions: ${JSON.stringify(counts)}; total ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (!verdicts.some((v) => v.flagged)) {
      const t = verdicts.find((v) => v.thresholds)?.thresholds;
      console.log(
        `no job was flagged under tau_pre ${t?.image_risk}, tau_post ${t?.answer_safety} (the reference thresholds; the tiny packs have` +
          ' random weights). To watch the aligner: ETA_TAU_PRE=0 ETA_TAU_POST=0.95 ALIGNER_MAX_TOTAL_TOKENS=64 npm run demo',
      );
    }
    return verdicts.every((v) => v.status === 'succeeded') ? 0 : 1;
  } finally {
    await pipeline.close();
    await privateRedis?.stop();
  }
}
