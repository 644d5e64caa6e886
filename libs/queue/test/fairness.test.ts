/**
 * Fair scheduling between tenants on real Redis and a real BullMQ Worker (concurrency 1, like one GPU slot): the order
 * in which the worker takes jobs is what a tenant sees.
 */
import { Redis } from 'ioredis';
import { Queue, Worker, type DefaultJobOptions, type Job } from 'bullmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { StageJob } from '@libs/contracts';
import {
  DEFAULT_FAIR_BURST_JOBS,
  DEFAULT_REDIS_URL,
  FAIR_COST_SCALE,
  FAIR_REBASE_AT,
  FairScheduler,
  StageDispatcher,
  fairConfigFromEnv,
  fairKeys,
  redisOptions,
  stageQueueKeys,
  type FairConfig,
} from '@libs/queue';
import { loadSettings } from '@libs/settings';

const REDIS_URL = process.env.REDIS_URL || DEFAULT_REDIS_URL;
const BASE = `{fair${process.pid}}`;
/** The default credit in priority steps: where an empty stage's virtual time starts. */
const BURST = DEFAULT_FAIR_BURST_JOBS * FAIR_COST_SCALE;
let run = 0;

function job(tenant: string, i: number): StageJob {
  return { id: `${tenant}-job-${i}`, tenant, prompt: `p${i}`, profile: 'none', policy: 'both', attempt: 0 };
}
const many = (tenant: string, n: number, from = 0) => Array.from({ length: n }, (_, i) => job(tenant, from + i));

/** A private stage queue with a dispatcher and a concurrency-1 worker that records the order it takes jobs in. */
class Bench {
  readonly prefix = `${BASE}${run++}`;
  readonly queue: Queue;
  readonly dispatcher: StageDispatcher;
  readonly taken: string[] = [];
  worker?: Worker;

  constructor(config: Partial<FairConfig> = {}, jobOptions: DefaultJobOptions = {}) {
    this.queue = new Queue('generate', { connection: redisOptions(REDIS_URL), prefix: this.prefix, defaultJobOptions: jobOptions });
    this.dispatcher = new StageDispatcher(
      { generate: this.queue },
      new FairScheduler({ enabled: true, burstJobs: DEFAULT_FAIR_BURST_JOBS, weights: {}, ...config }),
    );
  }

  start(process: (job: Job<StageJob>) => Promise<void> = () => new Promise((r) => setTimeout(r, 3))): void {
    this.worker = new Worker<StageJob>(
      'generate',
      async (job) => {
        this.taken.push(job.data.id);
        await process(job);
      },
      { connection: redisOptions(REDIS_URL), prefix: this.prefix, concurrency: 1 },
    );
  }

  async until(taken: number, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.taken.length < taken) {
      if (Date.now() > deadline) throw new Error(`only ${this.taken.length} of ${taken} jobs taken`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** Waits until the stage has nothing queued or running. */
  async drained(): Promise<void> {
    for (;;) {
      const c = await this.queue.getJobCounts('wait', 'prioritized', 'active', 'delayed');
      if (Object.values(c).every((n) => n === 0)) return;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  positions(tenant: string): number[] {
    return this.taken.flatMap((id, i) => (id.startsWith(`${tenant}-`) ? [i] : []));
  }

  async close(): Promise<void> {
    await this.worker?.close();
    await this.queue.obliterate({ force: true }).catch(() => undefined);
    await this.queue.close();
  }
}

describe('fair scheduling between tenants', () => {
  let redis: Redis;
  let bench: Bench | undefined;

  beforeAll(() => {
    redis = new Redis(redisOptions(REDIS_URL));
  });
  afterEach(async () => {
    await bench?.close();
    bench = undefined;
  });
  afterAll(async () => {
    const keys = await redis.keys(`${BASE}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  it("a tenant arriving behind another's 200 jobs is served next, all 5 before the 200 finish", async () => {
    bench = new Bench();
    await bench.dispatcher.enqueueMany('generate', many('a', 200));
    bench.start();
    await bench.until(10);
    const before = bench.taken.length;
    for (const j of many('b', 5)) await bench.dispatcher.enqueue('generate', j);
    const after = bench.taken.length;
    await bench.until(205);
    const b = bench.positions('b');
    expect(b).toHaveLength(5);
    // Within the burst (32), the newcomer goes ahead of every waiting job of A: only the job running when it arrived is before.
    expect(b[0]).toBeGreaterThanOrEqual(before);
    expect(b[4]).toBeLessThanOrEqual(after + 5);
    expect(Math.max(...b)).toBeLessThan(Math.max(...bench.positions('a')));
  });

  it('a newcomer goes at most FAIR_BURST_JOBS ahead, then alternates', async () => {
    bench = new Bench({ burstJobs: 4 });
    await bench.dispatcher.enqueueMany('generate', many('a', 100));
    bench.start();
    await bench.until(30);
    await bench.worker!.pause();
    const at = bench.taken.length;
    await bench.dispatcher.enqueueMany('generate', many('b', 10));
    bench.worker!.resume();
    await bench.until(110);
    const next = bench.taken
      .slice(at, at + 20)
      .map((id) => id[0])
      .join('');
    // 4 jobs of credit ahead of A, then one each (A first on ties: it was queued first).
    expect(next).toBe('bbbbabababababab' + 'aaaa');
  });

  it('two tenants with equal backlogs alternate', async () => {
    // No credit: B arrives while A's head has not moved, and with FAIR_BURST_JOBS=0 takes turns from its first job.
    bench = new Bench({ burstJobs: 0 });
    await bench.dispatcher.enqueueMany('generate', many('a', 20));
    await bench.dispatcher.enqueueMany('generate', many('b', 20));
    bench.start();
    await bench.until(40);
    expect(bench.taken.map((id) => id[0]).join('')).toBe('ab'.repeat(20));
  });

  it('a tenant of weight 2 gets twice the share of one of weight 1', async () => {
    bench = new Bench({ weights: { a: 2 }, burstJobs: 0 });
    await bench.dispatcher.enqueueMany('generate', many('a', 60));
    await bench.dispatcher.enqueueMany('generate', many('b', 60));
    bench.start();
    await bench.until(60);
    const first = bench.taken.slice(0, 60);
    const a = first.filter((id) => id.startsWith('a-')).length;
    expect(a).toBeGreaterThanOrEqual(39);
    expect(a).toBeLessThanOrEqual(41);
  });

  it('drops the tags when the stage empties, so past work is not held against a tenant', async () => {
    bench = new Bench();
    const tags = fairKeys(bench.prefix).tags('generate');
    // An empty stage starts at V = burst: the first tenant's jobs start there (385, 397, ...).
    await bench.dispatcher.enqueueMany('generate', many('a', 10));
    expect(await redis.hgetall(tags)).toEqual({ a: String(BURST + 10 * FAIR_COST_SCALE) });
    bench.start();
    await bench.until(10);
    await bench.drained();
    await bench.worker!.pause();
    await bench.dispatcher.enqueue('generate', job('b', 0));
    expect(await redis.hgetall(tags)).toEqual({ b: String(BURST + FAIR_COST_SCALE) });
    expect((await bench.queue.getJob('b-job-0'))!.priority).toBe(BURST + 1);
    await bench.dispatcher.enqueue('generate', job('a', 10));
    // A was idle again: it gets the newcomer's credit (ahead of B's waiting job), not a place after its 10 finished jobs.
    expect((await bench.queue.getJob('a-job-10'))!.priority).toBe(1);
  });

  it("a failed attempt comes back with its priority, ahead of the tenant's later jobs", async () => {
    bench = new Bench({}, { attempts: 2 });
    let failed = false;
    await bench.dispatcher.enqueueMany('generate', many('a', 5));
    bench.start(async (j) => {
      if (j.id === 'a-job-1' && !failed) {
        failed = true;
        throw new Error('transient');
      }
    });
    await bench.until(6);
    expect(bench.taken).toEqual(['a-job-0', 'a-job-1', 'a-job-1', 'a-job-2', 'a-job-3', 'a-job-4']);
  });

  it('off: no priorities, FIFO (the newcomer waits behind the whole backlog)', async () => {
    bench = new Bench({ enabled: false });
    await bench.dispatcher.enqueueMany('generate', many('a', 200));
    bench.start();
    await bench.until(10);
    for (const j of many('b', 5)) await bench.dispatcher.enqueue('generate', j);
    await bench.until(205);
    expect(bench.positions('b')).toEqual([200, 201, 202, 203, 204]);
    expect((await bench.queue.getJob('b-job-0'))?.priority ?? 0).toBe(0);
    expect(await redis.exists(fairKeys(bench.prefix).tags('generate'))).toBe(0);
  });

  it('the transactional add (intake creation) carries fair priorities too', async () => {
    bench = new Bench();
    await bench.dispatcher.enqueueMany('generate', many('a', 50));
    const tx = await bench.dispatcher.transaction();
    await bench.dispatcher.addToTransaction(tx, 'generate', many('b', 3));
    await tx.exec();
    const b = await Promise.all([0, 1, 2].map((i) => bench!.queue.getJob(`b-job-${i}`)));
    // A's backlog starts at the empty stage's V (385, ...); B, a newcomer, goes ahead of it by its credit.
    expect(b.map((j) => j!.priority)).toEqual([1, 1 + FAIR_COST_SCALE, 1 + 2 * FAIR_COST_SCALE]);
    bench.start();
    await bench.until(53);
    expect(
      bench.taken
        .slice(0, 6)
        .map((id) => id[0])
        .join(''),
    ).toBe('bbbaaa');
  });

  it('rebases a stage that never empties before its priorities reach the limit', async () => {
    bench = new Bench();
    const high = FAIR_REBASE_AT + 1000;
    await bench.queue.add('generate', job('x', 0), { jobId: 'x-job-0', priority: high });
    await bench.queue.add('generate', job('x', 1), { jobId: 'x-job-1', priority: high + 5, delay: 60_000 });
    await redis.hset(fairKeys(bench.prefix).tags('generate'), 'x', high + 12);
    await bench.dispatcher.enqueueMany('generate', many('a', 3));
    // The head (priority high) is now burst + 1; the delayed job's priority and X's tag moved with it; A, a newcomer,
    // starts its credit below the head.
    expect((await bench.queue.getJob('x-job-0'))!.priority).toBe(BURST + 1);
    expect(Number(await redis.hget(stageQueueKeys(bench.prefix, 'generate').job('x-job-1'), 'priority'))).toBe(BURST + 6);
    expect(await redis.hgetall(fairKeys(bench.prefix).tags('generate'))).toEqual({ x: String(BURST + 13), a: String(3 * FAIR_COST_SCALE) });
    const score = Number((await redis.zrange(stageQueueKeys(bench.prefix, 'generate').prioritized, -1, -1, 'WITHSCORES'))[1]);
    expect(Math.floor(score / 2 ** 32)).toBe(BURST + 1);
    bench.start();
    await bench.until(4);
    expect(bench.taken).toEqual(['a-job-0', 'a-job-1', 'a-job-2', 'x-job-0']);
  });
});

describe('fair scheduling settings', () => {
  it('defaults: on, a burst of 32, weight 1 for all; the table agrees', () => {
    expect(fairConfigFromEnv({})).toEqual({ enabled: true, burstJobs: 32, weights: {} });
    const table = loadSettings(undefined, {});
    expect(table.get('FAIR_SCHEDULING')).toBe(true);
    expect(table.get('FAIR_BURST_JOBS')).toBe(DEFAULT_FAIR_BURST_JOBS);
  });

  it('reads weights per tenant (names keep their case) and refuses bad ones', () => {
    const config = fairConfigFromEnv({ FAIR_SCHEDULING: 'false', FAIR_BURST_JOBS: '8', FAIR_WEIGHTS: 'Acme=2, tiny=0.5,big=12' });
    expect(config).toEqual({ enabled: false, burstJobs: 8, weights: { Acme: 2, tiny: 0.5, big: 12 } });
    const fair = new FairScheduler(config);
    expect([fair.cost('Acme'), fair.cost('tiny'), fair.cost('big'), fair.cost('other')]).toEqual([6, 24, 1, 12]);
    expect(() => fairConfigFromEnv({ FAIR_WEIGHTS: 'acme=0' })).toThrow(/FAIR_WEIGHTS/);
    expect(() => fairConfigFromEnv({ FAIR_WEIGHTS: 'acme=20' })).toThrow(/0.1 to 12/);
    expect(() => fairConfigFromEnv({ FAIR_WEIGHTS: 'acme' })).toThrow(/tenant=weight/);
    expect(() => fairConfigFromEnv({ FAIR_BURST_JOBS: '-1' })).toThrow(/FAIR_BURST_JOBS/);
  });
});
