import type { Worker } from 'bullmq';
import type { StageJob } from '@libs/contracts';
import { fairConfigFromEnv } from '@libs/queue';

/** The worker events TenantShare follows (a BullMQ Worker has them). */
export type ShareableWorker = Pick<Worker<StageJob>, 'on' | 'concurrency'>;

/**
 * How a stage's worker is shared between tenants, beside the queue's fair order (@libs/queue FairScheduler), which
 * decides only which job is fetched next:
 * - a worker fetches one job per job it completes (BullMQ's concurrency), so a newcomer's jobs at the head of the
 *   queue would still enter one completion at a time, behind a backlog's jobs that hold every slot. When the worker
 *   starts a job of a tenant it holds fewer jobs of than of another, it lifts its concurrency by `reserve`, so that
 *   tenant's next jobs are fetched too; it drops back when it starts a job of a tenant that holds no fewer than any
 *   other (the newcomer's jobs ran out at the head, or it caught up). The 'active' event fires inside BullMQ's fetch
 *   loop, which reads the raised concurrency on its next turn, so the lift is immediate; only the newcomer's first job
 *   waits for a held job to end.
 * - in the GPU stages each job's rows run under its tenant's group, so when the engine's batch is full a tenant that
 *   has used it less preempts rows of the one that used it most (libs/vlm scheduler.ts, shareByUsage). The jobs
 *   fetched past the base wait in the engine; memory holds at most `reserve` more rows' caches.
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

  attach(worker: ShareableWorker): void {
    if (!this.enabled) return;
    const base = worker.concurrency;
    const lift = base + (this.reserve ?? base);
    worker.on('active', (job) => {
      const mine = this.count(job.data.tenant, 1);
      const most = Math.max(...[...this.held].filter(([t]) => t !== job.data.tenant).map(([, n]) => n), 0);
      if (mine < most) worker.concurrency = lift;
      else if (worker.concurrency !== base) worker.concurrency = base;
    });
    const ended = (job: { data: StageJob } | undefined) => job && this.count(job.data.tenant, -1);
    worker.on('completed', ended);
    worker.on('failed', ended);
  }

  private count(tenant: string, by: number): number {
    const n = (this.held.get(tenant) ?? 0) + by;
    if (n > 0) this.held.set(tenant, n);
    else this.held.delete(tenant);
    return n;
  }
}
