/**
 * `npm run bench -- fairness [--a-jobs 2000] [--b-jobs 20] [--rounds 2] [--max-new-tokens N] [--aligner-max-tokens N] [--roles processes|inline]
 *   [--b-after-ms 0]`
 *
 * Fairness between tenants (issue 14): tenant A submits a large backlog (batches of INTAKE_MAX_BATCH_ITEMS), then
 * tenant B submits a small batch; B's time to verdict should stay near its time on an idle system. The roles run on
 * the factory packs (as `pipeline`'s batching section), two pipelines side by side: one with fair scheduling (the
 * default), one with FAIR_SCHEDULING=false (FIFO, the baseline). `--roles processes` (the default) runs each role as
 * its own child process, as they are deployed (one pod each); `inline` runs them all in this process, where every
 * role's Redis traffic and the evaluator's synchronous model calls share one event loop, and a newcomer's latency is
 * mostly that loop's queue. B submits right after A's last batch was accepted (the issue's case: B then shares the
 * machine with the intake's work on A's uploads and the stages' start), or `--b-after-ms` later, into a steady backlog.
 * Rounds, interleaved:
 *   idle (fair pipeline, B alone), then per round: busy fair, busy FIFO (order alternating), idle again
 * B's time to verdict is each verdict's completed_at minus the moment B's batch was sent; throughput is all verdicts
 * of the busy round over the wall time from A's first submit to the last verdict. Prints
 * `fairness: B p95 busy/idle <ratio>, throughput <ratio>` (throughput fair / FIFO; goals <= 2 and >= 0.95).
 */
import { join } from 'node:path';
import type { BatchStatus, Verdict, VerdictPage } from '@libs/contracts';
import { DEFAULT_REDIS_URL } from '@libs/queue';
import { readSampleBatch, sampleBatchForm, startLocalPipeline, type SampleItem } from '../test/harness/local-pipeline';
import { startProcessPipeline } from '../test/harness/processes';
import { argValue, median, percentile } from './_stats';

const SAMPLES = join(__dirname, '..', 'samples', 'demo-batch');
// The packs and sample items of bench/pipeline.ts's batching section.
const FACTORY_PACKS = { VLM_PACK_DIR: 'models/factory-vlm', CLIP_PACK_DIR: 'models/factory-clip', REWARD_PACK_DIR: 'models/factory-guard' };
const BATCH_ITEMS = 500;
const KEY_A = 'bench-tenant-a-key-0123456789abcdef';
const KEY_B = 'bench-tenant-b-key-0123456789abcdef';

/** What a round needs of a pipeline: its intake's URL. */
interface Pipeline {
  url: string;
  close(): Promise<void>;
}

function demoJobs(count: number, offset = 0): SampleItem[] {
  const items = readSampleBatch(SAMPLES).filter((i) => i.answer === undefined && i.image);
  return Array.from({ length: count }, (_, i) => items[(offset + i) % items.length]);
}

async function submit(p: Pipeline, key: string, items: SampleItem[]): Promise<string> {
  const res = await fetch(`${p.url}/v1/batches`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: sampleBatchForm(SAMPLES, items) });
  const body = (await res.json()) as { id?: string; error?: { code: string } };
  if (res.status !== 202 || !body.id) throw new Error(`batch refused: ${res.status} ${JSON.stringify(body)}`);
  return body.id;
}

/** Polls until every batch is done; returns the time (Date.now()) the last one was seen done. */
async function allDone(p: Pipeline, key: string, ids: string[]): Promise<number> {
  const headers = { authorization: `Bearer ${key}` };
  const pending = new Set(ids);
  let last = Date.now();
  while (pending.size > 0) {
    for (const id of [...pending]) {
      const status = (await (await fetch(`${p.url}/v1/batches/${id}`, { headers })).json()) as BatchStatus;
      if (status.done) {
        pending.delete(id);
        last = Date.now();
      }
    }
    if (pending.size > 0) await new Promise((r) => setTimeout(r, 50));
  }
  return last;
}

async function verdictsOf(p: Pipeline, key: string, id: string): Promise<Verdict[]> {
  const headers = { authorization: `Bearer ${key}` };
  const out: Verdict[] = [];
  let cursor: string | null = null;
  do {
    const page = (await (await fetch(`${p.url}/v1/batches/${id}/verdicts?limit=50${cursor ? `&cursor=${cursor}` : ''}`, { headers })).json()) as VerdictPage;
    out.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return out;
}

interface Round {
  /** B's times to verdict, ms. */
  b: number[];
  /** Verdicts of the round (A's and B's) per second of wall time. */
  throughput: number;
  wallMs: number;
  failed: number;
  /** B's verdicts: share that went through the aligner, and where their time went. */
  aligned: number;
  breakdown: string;
}

/** p50/p95 of B's time to acceptance (HTTP submit), and of its queue waits and runs per stage: what fairness controls (waits) against what it does not (runs). */
function breakdown(verdicts: Verdict[], sentAt: number): string {
  const accepted = verdicts.map((v) => Date.parse(v.created_at) - sentAt);
  const intake = `intake ${median(accepted).toFixed(0)}/${percentile(accepted, 95).toFixed(0)}, `;
  const keys = ['generate_wait_ms', 'generate_ms', 'evaluate_wait_ms', 'evaluate_ms', 'align_wait_ms', 'align_ms'] as const;
  return (
    intake +
    keys
      .map((k) => {
        const xs = verdicts.map((v) => v.timings[k]).filter((x): x is number => typeof x === 'number');
        return xs.length ? `${k.replace('_ms', '')} ${median(xs).toFixed(0)}/${percentile(xs, 95).toFixed(0)}` : `${k.replace('_ms', '')} -`;
      })
      .join(', ')
  );
}

/** A submits `aJobs` (nothing when 0), then, `bAfterMs` later, B submits `bJobs`; waits for every verdict. */
async function round(p: Pipeline, aJobs: number, bJobs: number, bAfterMs = 0): Promise<Round> {
  const started = Date.now();
  const aIds: string[] = [];
  for (let i = 0; i < aJobs; i += BATCH_ITEMS) aIds.push(await submit(p, KEY_A, demoJobs(Math.min(BATCH_ITEMS, aJobs - i), i)));
  if (aJobs > 0 && bAfterMs > 0) await new Promise((r) => setTimeout(r, bAfterMs));
  const bSent = Date.now();
  const bId = await submit(p, KEY_B, demoJobs(bJobs, 3));
  const end = Math.max(await allDone(p, KEY_B, [bId]), await allDone(p, KEY_A, aIds));
  const bVerdicts = await verdictsOf(p, KEY_B, bId);
  const aFailed = aIds.length ? (await Promise.all(aIds.map((id) => verdictsOf(p, KEY_A, id)))).flat().filter((v) => v.status !== 'succeeded').length : 0;
  return {
    b: bVerdicts.map((v) => Date.parse(v.completed_at!) - bSent),
    throughput: ((aJobs + bJobs) * 1000) / (end - started),
    wallMs: end - started,
    failed: aFailed + bVerdicts.filter((v) => v.status !== 'succeeded').length,
    aligned: bVerdicts.filter((v) => v.timings.align_ms !== undefined).length / bVerdicts.length,
    breakdown: breakdown(bVerdicts, bSent),
  };
}

export async function run(argv: string[]): Promise<void> {
  const aJobs = Number(argValue(argv, 'a-jobs', '2000'));
  const bJobs = Number(argValue(argv, 'b-jobs', '20'));
  const maxNewTokens = argValue(argv, 'max-new-tokens', '');
  const alignerMaxTokens = argValue(argv, 'aligner-max-tokens', '');
  const rounds = Number(argValue(argv, 'rounds', '2'));
  const layout = argValue(argv, 'roles', 'processes');
  const bAfterMs = Number(argValue(argv, 'b-after-ms', '0'));
  if (layout !== 'processes' && layout !== 'inline') throw new Error('--roles is processes or inline');
  const redisUrl = process.env.REDIS_URL || DEFAULT_REDIS_URL;
  const env = {
    REDIS_URL: redisUrl,
    ...FACTORY_PACKS,
    INTAKE_MAX_BACKLOG: String(10 * (aJobs + bJobs) + 100),
    ...(maxNewTokens ? { GENERATOR_MAX_NEW_TOKENS: maxNewTokens } : {}),
    ...(alignerMaxTokens ? { ALIGNER_MAX_TOTAL_TOKENS: alignerMaxTokens } : {}),
  };
  const tenants = { 'tenant-a': KEY_A, 'tenant-b': KEY_B };
  console.log(
    `fairness bench: tenant A ${aJobs} jobs, then tenant B ${bJobs}${bAfterMs ? ` ${bAfterMs} ms after A's last batch was accepted` : ''}; demo image+prompt jobs on ${FACTORY_PACKS.VLM_PACK_DIR}, Redis ${redisUrl}; roles ${layout === 'processes' ? 'one process each' : 'all in this process'}`,
  );
  const start = (e: NodeJS.ProcessEnv): Promise<Pipeline> =>
    layout === 'processes' ? startProcessPipeline({ tenants, env: e }) : startLocalPipeline({ quiet: true, tenants, env: e });
  const fair = await start(env);
  const fifo = await start({ ...env, FAIR_SCHEDULING: 'false' });
  try {
    // Warm-up: sessions, JIT, Redis scripts, in both pipelines.
    await round(fair, 40, bJobs);
    await round(fifo, 40, bJobs);
    // Rounds interleaved, the busy order alternating (fair FIFO, FIFO fair, ...), so drift of a noisy machine hits
    // both alike; B's latencies are pooled over the rounds and throughput is all verdicts over all wall time.
    const idle: Round[] = [await round(fair, 0, bJobs)];
    const busyFair: Round[] = [];
    const busyFifo: Round[] = [];
    for (let r = 0; r < rounds; r++) {
      if (r % 2 === 0) {
        busyFair.push(await round(fair, aJobs, bJobs, bAfterMs));
        busyFifo.push(await round(fifo, aJobs, bJobs, bAfterMs));
      } else {
        busyFifo.push(await round(fifo, aJobs, bJobs, bAfterMs));
        busyFair.push(await round(fair, aJobs, bJobs, bAfterMs));
      }
      idle.push(await round(fair, 0, bJobs));
    }
    const pooled = (rs: Round[]) => rs.flatMap((x) => x.b);
    const rate = (rs: Round[]) => (rs.length * (aJobs + bJobs) * 1000) / rs.reduce((t, x) => t + x.wallMs, 0);
    const idleP95 = percentile(pooled(idle), 95);
    const fairP95 = percentile(pooled(busyFair), 95);
    const failed = [...idle, ...busyFair, ...busyFifo].reduce((n, x) => n + x.failed, 0);
    const perRound = (rs: Round[], f: (x: Round) => string) => rs.map(f).join(', ');
    console.log(
      `  idle (B alone, ${idle.length} rounds): B p50 ${median(pooled(idle)).toFixed(0)} ms, p95 ${idleP95.toFixed(0)} ms (rounds: ${perRound(idle, (x) => percentile(x.b, 95).toFixed(0))})`,
    );
    for (const [name, rs] of [
      ['fair', busyFair],
      ['FIFO', busyFifo],
    ] as const) {
      console.log(
        `  busy, ${name}: B p50 ${median(pooled(rs)).toFixed(0)} ms, p95 ${percentile(pooled(rs), 95).toFixed(0)} ms; ${rate(rs).toFixed(2)} verdicts/s (rounds: p95 ${perRound(rs, (x) => percentile(x.b, 95).toFixed(0))}; ${perRound(rs, (x) => x.throughput.toFixed(2))}/s)`,
      );
    }
    console.log(`  B's jobs, ms p50/p95 (${(idle[0].aligned * 100).toFixed(0)}% aligned), first round:`);
    console.log(`    idle:       ${idle[0].breakdown}`);
    console.log(`    busy, fair: ${busyFair[0].breakdown}`);
    const worst = busyFair.reduce((w, x) => (percentile(x.b, 95) > percentile(w.b, 95) ? x : w));
    if (worst !== busyFair[0]) console.log(`    busy, fair, worst round (p95 ${percentile(worst.b, 95).toFixed(0)} ms): ${worst.breakdown}`);
    console.log(`    busy, FIFO: ${busyFifo[0].breakdown}`);
    if (failed) console.log(`  (${failed} verdicts failed)`);
    console.log(`fairness: B p95 busy/idle ${(fairP95 / idleP95).toFixed(2)}, throughput ${(rate(busyFair) / rate(busyFifo)).toFixed(3)}`);
  } finally {
    await fifo.close();
    await fair.close();
  }
}
