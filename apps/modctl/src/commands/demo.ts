/**
 * `npm run demo [-- --json] [-- --verbose] [samples-dir]`: every role against REDIS_URL (a private redis-server when
 * nothing answers and one is on the PATH), the shipped sample batch posted through the HTTP API as multipart, polled,
 * and printed as a table, or with --json as the full verdicts (a JSON array on stdout; progress goes to stderr).
 * The roles run in this process as separate Nest apps; the VLM engines run on worker threads.
 *
 * modctl is the operator CLI that composes roles: this command is the one place in apps/ that imports other apps,
 * and only through their public entries (apps/<role>/src/index.ts; the lint rule allows nothing deeper).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { BatchAccepted, Verdict } from '@libs/contracts';
import { DEFAULT_REDIS_URL, deleteKeys, redisAnswers, startPrivateRedis, type PrivateRedis } from '@libs/queue';
import { sha256Hex } from '@libs/storage';
import { createIntakeApp } from '../../../intake-api/src';
import { GeneratorModule } from '../../../generator/src';
import { EvaluatorModule } from '../../../evaluator/src';
import { AlignerModule } from '../../../aligner/src';
import { pollBatch, readSampleBatch, sampleBatchForm } from '../sample-batch';

export const summary = 'run every role locally, moderate the sample batch through the HTTP API, print verdicts';

interface Roles {
  url: string;
  apiKey: string;
  close(): Promise<void>;
}

/** Every role in this process under its own key prefix, blob directory and API key; workers first, so their engines load while nothing waits. */
async function startRoles(redisUrl: string, quiet: boolean): Promise<Roles> {
  const apiKey = `demo-${randomBytes(16).toString('hex')}`;
  const blobDir = mkdtempSync(join(tmpdir(), 'mod-blobs-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    QUEUE_PREFIX: `{demo${randomBytes(4).toString('hex')}}`,
    BLOB_DIR: blobDir,
    API_KEYS: `demo:${sha256Hex(apiKey)}`,
    ADMIN_API_KEY_SHA256: sha256Hex(`admin-${randomBytes(16).toString('hex')}`),
    REDIS_URL: redisUrl,
  };
  const logger = quiet ? (['error'] as const) : (['error', 'warn', 'log'] as const);
  const workers: INestApplicationContext[] = [];
  let intake: INestApplicationContext | undefined;
  const close = async () => {
    // Workers drain before the intake closes; each closes its own queues and Redis connections.
    await Promise.allSettled(workers.map((a) => a.close()));
    await intake?.close();
    await deleteKeys(redisUrl, env.QUEUE_PREFIX!);
    rmSync(blobDir, { recursive: true, force: true });
  };
  try {
    await Promise.all(
      [GeneratorModule.register(env), EvaluatorModule.register(env), AlignerModule.register(env)].map(async (module) => {
        workers.push(await NestFactory.createApplicationContext(module, { logger: [...logger], abortOnError: false }));
      }),
    );
    const app = await createIntakeApp({ env, logger: [...logger] });
    await app.listen(0, '127.0.0.1');
    intake = app;
    const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    return { url, apiKey, close };
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
}

const excerpt = (s: string | null | undefined, n: number) => {
  const flat = (s ?? '').replace(/\s+/g, ' ').trim();
  return flat.length > n ? `${flat.slice(0, n - 1)}…` : flat;
};
const fmt = (x: number | null | undefined) => (x === null || x === undefined ? '-' : x.toFixed(3));

/**
 * What a user checks per item: what the sample is (its `expect` metadata: benign or harmful), the question, whether
 * the answer was generated or supplied, the decision and scores, and enough of the answer shown to see what it says.
 */
export function verdictTable(verdicts: Verdict[]): string {
  const rows = verdicts.map((v) => [
    // The id's last 8 hex digits, plus the item index for batch jobs (`bat_<hex>_<index>`).
    v.id.replace(/^.*?([0-9a-f]{8}(_\d+)?)$/, '$1'),
    String(v.metadata?.expect ?? '-'),
    excerpt(v.prompt, 48),
    v.metadata?.supplied === true ? 'supplied' : v.original_answer === null ? '-' : 'generated',
    v.status === 'succeeded' ? (v.decision ?? '-') : `${v.status}:${v.error?.code ?? ''}`,
    v.flagged === null ? '-' : String(v.flagged),
    fmt(v.scores?.image_risk),
    fmt(v.scores?.answer_safety),
    Object.entries(v.categories ?? {})
      .filter(([, on]) => on)
      .map(([c]) => c)
      .join(',') || '-',
    excerpt(v.final_answer, 64),
    String(v.timings.total_ms ?? '-'),
  ]);
  const head = ['id', 'expect', 'prompt', 'answer', 'decision', 'flagged', 'image_risk', 'answer_safety', 'categories', 'answer shown', 'ms'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const started = Date.now();
  const json = argv.includes('--json');
  // With --json, stdout carries the verdicts alone, so it pipes into jq; progress lines go to stderr.
  const log = json ? (line: string) => console.error(line) : (line: string) => console.log(line);
  const samplesDir = resolve(argv.find((a) => !a.startsWith('-')) ?? 'data/factorysafe/demo');
  let redisUrl = process.env.REDIS_URL || DEFAULT_REDIS_URL;
  let privateRedis: PrivateRedis | undefined;
  if (!(await redisAnswers(redisUrl))) {
    log(`no Redis answers at ${redisUrl}; starting a private redis-server`);
    privateRedis = await startPrivateRedis().catch((err: Error) => {
      throw new Error(`no Redis at ${redisUrl} and redis-server could not be started (${err.message}); set REDIS_URL`);
    });
    redisUrl = privateRedis.url;
  }
  log(`Redis: ${redisUrl}`);
  const pipeline = await startRoles(redisUrl, !argv.includes('--verbose'));
  try {
    log(`roles up after ${Date.now() - started} ms; intake at ${pipeline.url}`);
    const items = readSampleBatch(samplesDir);
    const res = await fetch(`${pipeline.url}/v1/batches`, {
      method: 'POST',
      headers: { authorization: `Bearer ${pipeline.apiKey}` },
      body: sampleBatchForm(samplesDir, items),
    });
    if (res.status !== 202) throw new Error(`batch submission answered ${res.status}: ${await res.text()}`);
    const batch = (await res.json()) as BatchAccepted;
    log(`submitted batch ${batch.id} with ${batch.items} items; polling ${batch.poll_url}`);
    const verdicts = await pollBatch(pipeline.url, pipeline.apiKey, batch.id, 150_000);
    if (json) console.log(JSON.stringify(verdicts, null, 2));
    else console.log(`\n${verdictTable(verdicts)}\n`);
    const counts = verdicts.reduce<Record<string, number>>((acc, v) => ((acc[v.decision ?? v.status] = (acc[v.decision ?? v.status] ?? 0) + 1), acc), {});
    log(`decisions: ${JSON.stringify(counts)}; total ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (!verdicts.some((v) => v.flagged)) {
      const t = verdicts.find((v) => v.thresholds)?.thresholds;
      log(
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
