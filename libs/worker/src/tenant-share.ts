import type { Queue, Worker } from 'bullmq';
import type { StageJob } from '@libs/contracts';
import { fairConfigFromEnv } from '@libs/queue';

/** The worker events TenantShare follows (a BullMQ Worker has them). */
export type ShareableWorker = Pick<Worker<StageJob>, 'on' | 'concurrency'>;

/** The tenant of the job the worker would fetch next, if any. */
export type HeadTenant = () => Promise<string | undefined>;

/** How often (ms) a worker that holds all its slots looks at the head of its queue: two to four Redis reads each time. */
export const HEAD_PROBE_MS = 20;

/** The next job's tenant of a BullMQ queue: its wait list's oldest job (served first), else the prioritized set's head. */
export function queueHeadTenant(queue: Pick<Queue<StageJob>, 'getJobs'>): HeadTenant {
  return async () => {
    const [next] = await queue.getJobs(['waiting'], 0, 0, true);
    const job = next ?? (await queue.getJobs(['prioritized'], 0, 0, true))[0];
    return job?.data.tenant;
  };
}

/**
 * Wakes BullMQ's fetch loop, which, while every slot is taken, waits for a job to end before it reads `concurrency`
 * again. BullMQ 6's own `Worker.resume()` wakes it the same way (`this.mainLoopQueue?.add(Promise.resolve())`): the
 * loop takes the empty result and fetches while it holds fewer jobs than its concurrency. The field is private; if an
 * upgrade renames it this does nothing, and test/tenant-share.test.ts (a newcomer starts while no slot frees) fails.
 */
function wakeFetchLoop(worker: ShareableWorker): void {
  (worker as { mainLoopQueue?: { add(p: Promise<undefined>): void } | null }).mainLoopQueue?.add(Promise.resolve(undefined));
}

/**
 * How a stage's worker is shared between tenants, beside the queue's fair order (@libs/queue FairScheduler), which
 * decides only which job is fetched next:
 * - a worker fetches one job per job it completes (BullMQ's concurrency), so a newcomer's jobs at the head of the
 *   queue would still enter one completion at a time, behind a backlog's jobs that hold every slot. When the worker
 *   starts a job of a tenant it holds fewer jobs of than of another, it lifts its concurrency by `reserve`, so that
 *   tenant's next jobs are fetched too; it drops back when it starts a job of a tenant that holds no fewer than any
 *   other (the newcomer's jobs ran out at the head, or it caught up). The 'active' event fires inside BullMQ's fetch
 *   loop, which reads the raised concurrency on its next turn, so the lift is immediate. The newcomer's first job
 *   would still wait for a held job to end (a backlog's rows end in prefill-sized groups, ~100 ms apart on a CPU):
 *   so while every slot is taken the worker looks at the head of its queue every HEAD_PROBE_MS, and lifts and wakes
 *   its fetch loop when the next job is of a tenant it holds fewer jobs of.
 * - in the GPU stages each job's rows run under its tenant's group, so when the engine's batch is full a tenant that
 *   has used it less preempts rows of the one that used it most, and holds that one's waiting rows back while its own
 *   run (libs/vlm scheduler.ts, shareByUsage and unheld). The jobs fetched past the base wait in the engine; memory
 *   holds at most `reserve` more rows' caches.
 * FAIR_SCHEDULING=false turns both off: the workers and the engine are first come, first served, as the queues are.
 */
export class TenantShare {
  private readonly held = new Map<string, number>();

  /**
   * @param enabled - FAIR_SCHEDULING (default on).
   * @param reserve - jobs past the base concurrency while a tenant it holds few of is being fetched;
   *   undefined: the base concurrency (one more engine batch in a GPU stage).
   */
  constructor(
    readonly enabled: boolean,
    private readonly reserve?: number,
  ) {}

  static fromEnv(env: NodeJS.ProcessEnv = process.env): TenantShare {
    return new TenantShare(fairConfigFromEnv(env).enabled);
  }

  /** The engine row group of a job (GenerationRequest.group); undefined when fair scheduling is off. */
  groupOf(job: Pick<StageJob, 'tenant'>): string | undefined {
    return this.enabled ? job.tenant : undefined;
  }

  /** Jobs of each tenant the worker holds now. */
  get holding(): ReadonlyMap<string, number> {
    return this.held;
  }

  /**
   * @param head - where the worker looks while every slot is taken (queueHeadTenant of its queue); without it, it does not.
   * @param probeMs - how often it looks then.
   */
  attach(worker: ShareableWorker, head?: HeadTenant, probeMs = HEAD_PROBE_MS): void {
    if (!this.enabled) return;
    const base = worker.concurrency;
    const lift = base + (this.reserve ?? base);
    worker.on('active', (job) => {
      this.count(job.data.tenant, 1);
      if (this.holdsFewer(job.data.tenant)) worker.concurrency = lift;
      else if (worker.concurrency !== base) worker.concurrency = base;
    });
    const ended = (job: { data: StageJob } | undefined) => job && this.count(job.data.tenant, -1);
    worker.on('completed', ended);
    worker.on('failed', ended);
    if (!head) return;
    let looking = false;
    const probe = setInterval(() => {
      if (looking || this.total() < worker.concurrency) return;
      looking = true;
      head()
        .then((tenant) => {
          if (tenant === undefined || !this.holdsFewer(tenant)) return;
          worker.concurrency = lift;
          wakeFetchLoop(worker);
        })
        // A failed read is the next probe's to retry; the worker's own fetch reports a dead Redis.
        .catch(() => undefined)
        .finally(() => (looking = false));
    }, probeMs);
    probe.unref();
    worker.on('closing', () => clearInterval(probe));
  }

  /** Whether the worker holds fewer jobs of `tenant` than of some other tenant. */
  private holdsFewer(tenant: string): boolean {
    const mine = this.held.get(tenant) ?? 0;
    for (const [t, n] of this.held) if (t !== tenant && n > mine) return true;
    return false;
  }

  private total(): number {
    let n = 0;
    for (const k of this.held.values()) n += k;
    return n;
  }

  private count(tenant: string, by: number): number {
    const n = (this.held.get(tenant) ?? 0) + by;
    if (n > 0) this.held.set(tenant, n);
    else this.held.delete(tenant);
    return n;
  }
}
