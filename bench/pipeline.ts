/**
 * `npm run bench -- pipeline [--requests N] [--concurrency C] [--jobs M]`
 *
 * 1. Intake throughput: requests/s of POST /v1/jobs through real HTTP against a real Redis, for a JSON job without
 *    an image and for a JSON job with a ~100 KB PNG (base64; each request a distinct image, so every one is
 *    inspected, decoded and stored). No workers run, so the figures are the API's alone.
 * 2. Queue hop latency: the time a job waits in each stage queue while its worker is idle (enqueue -> picked up),
 *    p50/p99 over M jobs sent one after another through all three stages (thresholds set to flag everything, and
 *    tiny token budgets, so alignment runs and the run stays short).
 */
import { randomBytes } from 'node:crypto';
import sharp from 'sharp';
import type { Verdict } from '@libs/contracts';
import { DEFAULT_REDIS_URL } from '@libs/queue';
import { startLocalPipeline } from '../test/harness/local-pipeline';

function arg(argv: string[], name: string, fallback: number): number {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
}

function quantile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const pos = q * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

async function distinctPngs(count: number, bytes: number): Promise<string[]> {
  const side = Math.ceil(Math.sqrt(bytes / 3));
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const raw = randomBytes(side * side * 3);
    out.push(
      (
        await sharp(raw, { raw: { width: side, height: side, channels: 3 } })
          .png({ compressionLevel: 0 })
          .toBuffer()
      ).toString('base64'),
    );
  }
  return out;
}

async function load(
  url: string,
  apiKey: string,
  requests: number,
  concurrency: number,
  body: (i: number) => string,
): Promise<{ rps: number; p50: number; p99: number; errors: number }> {
  let next = 0;
  let errors = 0;
  const latencies: number[] = [];
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < requests; i = next++) {
        const t = performance.now();
        const res = await fetch(`${url}/v1/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
          body: body(i),
        });
        await res.arrayBuffer();
        if (res.status !== 202) errors++;
        latencies.push(performance.now() - t);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { rps: requests / seconds, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), errors };
}

export async function run(argv: string[]): Promise<void> {
  const requests = arg(argv, 'requests', 2000);
  const concurrency = arg(argv, 'concurrency', 16);
  const jobs = arg(argv, 'jobs', 100);
  const redisUrl = process.env.REDIS_URL || DEFAULT_REDIS_URL;
  console.log(`pipeline bench: Redis ${redisUrl}, node ${process.version}, ${requests} requests x ${concurrency} concurrent, ${jobs} sequential jobs`);

  // 1. Intake alone.
  const intake = await startLocalPipeline({
    roles: ['intake'],
    quiet: true,
    env: { REDIS_URL: redisUrl, INTAKE_MAX_BACKLOG: String(10 * requests + 10) },
  });
  try {
    const pngs = await distinctPngs(64, 100 * 1024);
    console.log(`image: ${Math.round(Buffer.from(pngs[0], 'base64').length / 1024)} KB PNG, ${pngs.length} distinct ones cycled`);
    await load(intake.url, intake.apiKey, 100, concurrency, (i) => JSON.stringify({ prompt: `warm-up ${i}` }));
    const plain = await load(intake.url, intake.apiKey, requests, concurrency, (i) => JSON.stringify({ prompt: `Is the guard closed? #${i}` }));
    const imageRequests = Math.max(200, Math.floor(requests / 4));
    const withImage = await load(intake.url, intake.apiKey, imageRequests, concurrency, (i) =>
      JSON.stringify({ prompt: `What machine is this? #${i}`, image: pngs[i % pngs.length] }),
    );
    console.log('\nintake (POST /v1/jobs, 202 responses)');
    console.log('  case                      requests   req/s    p50 ms   p99 ms   errors');
    const row = (name: string, n: number, r: Awaited<ReturnType<typeof load>>) =>
      console.log(
        `  ${name.padEnd(24)}  ${String(n).padStart(8)}  ${r.rps.toFixed(0).padStart(6)}  ${r.p50.toFixed(1).padStart(8)}  ${r.p99.toFixed(1).padStart(7)}  ${String(r.errors).padStart(7)}`,
      );
    row('JSON, no image', requests, plain);
    row('JSON, 100 KB PNG', imageRequests, withImage);
  } finally {
    await intake.close();
  }

  // 2. Hop latency through all stages.
  const pipeline = await startLocalPipeline({
    quiet: true,
    env: {
      REDIS_URL: redisUrl,
      ETA_TAU_PRE: '0',
      ETA_TAU_POST: '1000',
      GENERATOR_MAX_NEW_TOKENS: '8',
      ALIGNER_N: '2',
      ALIGNER_MAX_TOTAL_TOKENS: '8',
    },
  });
  try {
    const png = Buffer.from((await distinctPngs(1, 4 * 1024))[0], 'base64').toString('base64');
    const verdicts: Verdict[] = [];
    for (let i = 0; i < jobs + 5; i++) {
      const res = await fetch(`${pipeline.url}/v1/jobs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${pipeline.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: `How do I open the guard? #${i}`, image: png }),
      });
      const { id } = (await res.json()) as { id: string };
      for (;;) {
        const v = (await (await fetch(`${pipeline.url}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${pipeline.apiKey}` } })).json()) as Verdict;
        if (v.status === 'succeeded' || v.status === 'failed') {
          if (i >= 5) verdicts.push(v); // the first few warm the engines
          break;
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    }
    const failed = verdicts.filter((v) => v.status !== 'succeeded').length;
    console.log(`\nqueue hops (${verdicts.length} jobs one at a time, idle workers; ${failed} failed)`);
    console.log('  hop                          p50 ms   p99 ms   (stage run p50 ms)');
    for (const [hop, wait, runKey] of [
      ['intake -> generate', 'generate_wait_ms', 'generate_ms'],
      ['generate -> evaluate', 'evaluate_wait_ms', 'evaluate_ms'],
      ['evaluate -> align', 'align_wait_ms', 'align_ms'],
    ] as const) {
      const waits = verdicts.map((v) => v.timings[wait]).filter((x): x is number => typeof x === 'number');
      const runs = verdicts.map((v) => v.timings[runKey]).filter((x): x is number => typeof x === 'number');
      console.log(
        `  ${hop.padEnd(26)}  ${quantile(waits, 0.5).toFixed(1).padStart(7)}  ${quantile(waits, 0.99).toFixed(1).padStart(7)}   (${quantile(runs, 0.5).toFixed(1)})`,
      );
    }
    const totals = verdicts.map((v) => v.timings.total_ms);
    console.log(`  end to end (3 stages)       ${quantile(totals, 0.5).toFixed(1).padStart(7)}  ${quantile(totals, 0.99).toFixed(1).padStart(7)}`);
  } finally {
    await pipeline.close();
  }
}
