/**
 * A GPU stage's worker fetches one job per job it completes, so a tenant whose jobs reach the head of the queue while
 * another tenant's jobs hold every slot would still enter one completion at a time. TenantShare lifts the worker's
 * concurrency when it starts a job of a tenant it holds fewer jobs of, and drops it back when it starts one of the
 * tenant it holds most of. Real Redis, real BullMQ worker.
 */
import { randomBytes } from 'node:crypto';
import { Queue, Worker, type Job } from 'bullmq';
import { afterEach, describe, expect, it } from 'vitest';
import type { StageJob } from '@libs/contracts';
import { DEFAULT_REDIS_URL, deleteKeys, redisOptions } from '@libs/queue';
import { queueHeadTenant, TenantShare } from '@libs/worker';

const REDIS_URL = process.env.REDIS_URL || DEFAULT_REDIS_URL;

interface Held {
  started: string[];
  release(id: string): void;
  waitStarted(id: string, ms: number): Promise<boolean>;
}

/** A worker whose jobs run until released; records the order they started in. */
function heldWorker(prefix: string, concurrency: number): { worker: Worker<StageJob>; held: Held } {
  const releases = new Map<string, () => void>();
  const started: string[] = [];
  const worker = new Worker<StageJob>(
    'generate',
    (job: Job<StageJob>) => {
      started.push(job.id!);
      return new Promise<void>((resolve) => releases.set(job.id!, resolve));
    },
    { connection: redisOptions(REDIS_URL), prefix, concurrency, autorun: false },
  );
  const held: Held = {
    started,
    release: (id) => releases.get(id)!(),
    async waitStarted(id, ms) {
      const deadline = Date.now() + ms;
      while (!started.includes(id)) {
        if (Date.now() > deadline) return false;
        await new Promise((r) => setTimeout(r, 10));
      }
      return true;
    },
  };
  return { worker, held };
}

const job = (id: string, tenant: string) => ({ name: 'generate', data: { id, tenant } as StageJob, opts: { jobId: id } });

describe('TenantShare on a real BullMQ worker', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  /** Tenant a's jobs hold all six slots of a worker; b's three jobs are then added at the head. */
  async function saturated(share: TenantShare, options: { probe: boolean; priorities?: boolean }) {
    const prefix = `{tshare${randomBytes(4).toString('hex')}}`;
    const queue = new Queue<StageJob>('generate', { connection: redisOptions(REDIS_URL), prefix });
    const { worker, held } = heldWorker(prefix, 6);
    cleanups.push(async () => {
      for (const id of held.started) held.release(id);
      await worker.close();
      await queue.close();
      await deleteKeys(REDIS_URL, prefix);
    });
    share.attach(worker, options.probe ? queueHeadTenant(queue) : undefined);
    // Tenant a's backlog, then tenant b's jobs at the head of the queue: lifo in the wait list, or (as the fair order
    // puts them) a better priority than a's.
    const order = options.priorities ? (i: number) => ({ priority: 10 + i }) : () => ({});
    await queue.addBulk(Array.from({ length: 9 }, (_, i) => ({ ...job(`a${i + 1}`, 'a'), opts: { jobId: `a${i + 1}`, ...order(i) } })));
    void worker.run();
    expect(await held.waitStarted('a6', 5000)).toBe(true);
    for (const [i, id] of ['b3', 'b2', 'b1'].entries())
      await queue.add('generate', { id, tenant: 'b' } as StageJob, { jobId: id, ...(options.priorities ? { priority: 3 - i } : { lifo: true }) });
    return { worker, held };
  }

  async function setup(share: TenantShare) {
    const { worker, held } = await saturated(share, { probe: false });
    // One of a's jobs finishes: the slot goes to b1, the head.
    held.release('a1');
    expect(await held.waitStarted('b1', 5000)).toBe(true);
    return { worker, held };
  }

  it("starting a job of a tenant it holds few of fetches that tenant's next jobs now, past the concurrency; the next job of the tenant it holds most of drops it back", async () => {
    const share = new TenantShare(true);
    const { worker, held } = await setup(share);
    // a2..a6 still hold their slots, and none ends: b2 and b3 start at once anyway, then a7 (a's turn again) ends the
    // lift.
    expect(await held.waitStarted('b2', 5000)).toBe(true);
    expect(await held.waitStarted('b3', 5000)).toBe(true);
    expect(await held.waitStarted('a7', 5000)).toBe(true);
    expect(held.started).toEqual(['a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'b1', 'b2', 'b3', 'a7']);
    expect(worker.concurrency).toBe(6);
    // Nothing more is fetched until the worker holds fewer than its concurrency again.
    expect(await held.waitStarted('a8', 300)).toBe(false);
    expect(Object.fromEntries(share.holding)).toEqual({ a: 6, b: 3 });
    expect(share.groupOf({ tenant: 'b' })).toBe('b');
  });

  it("looking at the queue's head: a newcomer's first job starts while every slot is held and none ends (wait list and priorities)", async () => {
    for (const priorities of [false, true]) {
      const share = new TenantShare(true);
      const { worker, held } = await saturated(share, { probe: true, priorities });
      expect(await held.waitStarted('b3', 5000), `priorities ${priorities}`).toBe(true);
      expect(await held.waitStarted('a7', 5000)).toBe(true);
      expect(held.started).toEqual(['a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'b1', 'b2', 'b3', 'a7']);
      expect(worker.concurrency).toBe(6);
      // The backlog's own jobs at the head lift nothing.
      expect(await held.waitStarted('a8', 300)).toBe(false);
      expect(Object.fromEntries(share.holding)).toEqual({ a: 7, b: 3 });
    }
  });

  it('FAIR_SCHEDULING=false: the worker keeps its concurrency, first come, first served, and jobs carry no engine group', async () => {
    const share = TenantShare.fromEnv({ FAIR_SCHEDULING: 'false' });
    const { worker, held } = await setup(share);
    expect(await held.waitStarted('b2', 500)).toBe(false);
    expect(worker.concurrency).toBe(6);
    expect(share.groupOf({ tenant: 'b' })).toBeUndefined();
  });
});
