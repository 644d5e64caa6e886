import { Logger, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { WorkerHost } from '@nestjs/bullmq';
import { Queue, type Job } from 'bullmq';
import { TERMINAL_STATUSES, type ErrorCode, type Stage, type StageJob, type Verdict } from '@libs/contracts';
import { isFinalFailure, toWorkerError, verdictErrorOf } from '@libs/queue';
import { Counter, Histogram, Registry } from 'prom-client';
import type { VerdictStore } from '@libs/storage';
import { annotateActiveSpan, ATTR, flushTracing, inStageSpan, traceCarrier } from '@libs/telemetry';
import { queueHeadTenant, TenantShare } from './tenant-share';

/** Stage figures of this process, served by the worker's probe server at /metrics. */
export const workerMetricsRegistry = new Registry();
const stageRuns = new Counter({
  name: 'moderation_stage_runs_total',
  help: 'Stage runs by stage and outcome (completed, retry, failed)',
  labelNames: ['stage', 'outcome'],
  registers: [workerMetricsRegistry],
});
const stageSeconds = new Histogram({
  name: 'moderation_stage_run_seconds',
  help: 'Duration of successful stage runs',
  labelNames: ['stage'],
  buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
  registers: [workerMetricsRegistry],
});
const stageWaitSeconds = new Histogram({
  name: 'moderation_stage_wait_seconds',
  help: 'Time a job waited in the stage queue before a worker took it (the hop latency)',
  labelNames: ['stage'],
  buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600, 3600],
  registers: [workerMetricsRegistry],
});

function elapsedSince(createdAt: string): number {
  return Date.now() - Date.parse(createdAt);
}

/**
 * Marks the verdict succeeded with `patch`, unless it is already final (a duplicate run must not overwrite it).
 * Called from a stage's run, so the write is inside that stage's span, which gets the decision.
 */
export async function finishVerdict(store: VerdictStore, id: string, patch: (v: Verdict) => Partial<Verdict>): Promise<Verdict | null> {
  const verdict = await store.patch(id, (v) => {
    const p = patch(v);
    return {
      ...p,
      status: 'succeeded',
      completed_at: new Date().toISOString(),
      timings: { ...v.timings, ...p.timings, total_ms: elapsedSince(v.created_at) },
    };
  });
  annotateActiveSpan({ [ATTR.decision]: verdict?.decision ?? undefined, [ATTR.flagged]: verdict?.flagged ?? undefined });
  return verdict;
}

/**
 * Base of the three stage processors: records the stage on the verdict, turns bad data into a StageFailure
 * (an UnrecoverableError carrying its code), and writes a `failed` verdict when BullMQ gives a job up, so
 * nothing ends in silence.
 * Subclasses implement `run`; a verdict that is already final (a duplicate delivery) is skipped.
 */
export abstract class StageWorkerHost extends WorkerHost implements OnApplicationBootstrap, BeforeApplicationShutdown {
  protected abstract readonly stage: Stage;
  /** The code a failed verdict gets when this stage's unrecoverable error carries none. */
  protected abstract readonly failureCode: ErrorCode;
  protected readonly logger = new Logger(this.constructor.name);
  /** How the worker (and a GPU stage's engine) is shared between tenants: the fetch lift, the engine row groups. */
  protected readonly tenantShare = TenantShare.fromEnv();
  /** The worker's own queue, read only where TenantShare looks at its head. */
  private ownQueue?: Queue<StageJob>;

  constructor(protected readonly verdicts: VerdictStore) {
    super();
  }

  protected abstract run(job: Job<StageJob>, verdict: Verdict): Promise<void>;

  /**
   * One span per attempt (`<stage> process`), child of the context the job carries (the intake's HTTP span, or the
   * previous stage's span); the job data `run` sees carries this span instead, so the job it enqueues for the
   * next stage (`{ ...job.data, ... }`) continues the trace from here. Processors add model and batch attributes.
   */
  async process(job: Job<StageJob>): Promise<void> {
    const { data } = job;
    const attributes = {
      [ATTR.id]: data.id,
      [ATTR.tenant]: data.tenant,
      [ATTR.stage]: this.stage,
      [ATTR.attempt]: job.attemptsMade + 1,
      [ATTR.batchId]: data.batchId,
      [ATTR.profile]: data.profile,
      [ATTR.policy]: data.policy,
      [ATTR.messagingSystem]: 'bullmq',
      [ATTR.messagingOperation]: 'process',
      [ATTR.messagingDestination]: job.queueName,
      [ATTR.messagingMessageId]: job.id,
    };
    return inStageSpan(this.stage, data, attributes, async () => {
      // In memory only: a retry reads the job from Redis again and gets a fresh span under the original parent.
      job.data = { ...data, ...traceCarrier() };
      await this.processTraced(job);
    });
  }

  private async processTraced(job: Job<StageJob>): Promise<void> {
    const waitMs = (job.processedOn ?? Date.now()) - job.timestamp;
    const verdict = await this.verdicts.patch(job.data.id, (v) => ({
      status: 'processing',
      attempts: v.attempts + 1,
      timings: { ...v.timings, [`${this.stage}_wait_ms`]: waitMs },
    }));
    if (!verdict) {
      this.logger.warn(`job ${job.data.id}: no verdict (expired or never created); dropping the stage run`);
      annotateActiveSpan({ [ATTR.skipped]: 'no_verdict' });
      return;
    }
    if (TERMINAL_STATUSES.has(verdict.status)) {
      annotateActiveSpan({ [ATTR.skipped]: 'already_final' });
      return;
    }
    stageWaitSeconds.observe({ stage: this.stage }, waitMs / 1000);
    const started = Date.now();
    try {
      await this.run(job, verdict);
      stageRuns.inc({ stage: this.stage, outcome: 'completed' });
      stageSeconds.observe({ stage: this.stage }, (Date.now() - started) / 1000);
    } catch (err) {
      this.logger.warn(`job ${job.data.id} ${this.stage} attempt ${job.attemptsMade + 1}: ${(err as Error).message}`);
      throw toWorkerError(err);
    }
  }

  onApplicationBootstrap(): void {
    // `err` is the error `process` threw (a StageFailure keeps its `code`), or BullMQ's own for a stalled job.
    this.worker.on('failed', (job, err) => {
      if (!job) return;
      const final = isFinalFailure(job, err);
      stageRuns.inc({ stage: this.stage, outcome: final ? 'failed' : 'retry' });
      if (final) this.recordFailure(job.data.id, err);
    });
    this.worker.on('error', (err) => this.logger.error(`worker error: ${err.message}`));
    if (this.tenantShare.enabled) {
      const { connection, prefix } = this.worker.opts;
      this.ownQueue = new Queue<StageJob>(this.worker.name, { connection, prefix });
      // The worker reports a dead Redis; the probe's reads just fail until it is back.
      this.ownQueue.on('error', () => undefined);
    }
    this.tenantShare.attach(this.worker, this.ownQueue && queueHeadTenant(this.ownQueue));
  }

  private recordFailure(id: string, err: Error): void {
    const error = verdictErrorOf(this.stage, err, this.failureCode);
    void this.verdicts
      .patch(id, (v) => ({
        status: 'failed',
        error,
        completed_at: new Date().toISOString(),
        timings: { ...v.timings, total_ms: elapsedSince(v.created_at) },
      }))
      .catch((e: Error) => this.logger.error(`job ${id}: could not record its failure: ${e.message}`));
  }

  /** SIGTERM: stop taking jobs and let the running ones finish before the engine and Redis close. */
  async beforeApplicationShutdown(): Promise<void> {
    this.logger.log(`draining ${this.stage} worker`);
    await this.worker.close();
    await this.ownQueue?.close();
    // The drained jobs' spans have ended: export them before the engine and Redis close and the process exits.
    await flushTracing().catch((err: Error) => this.logger.warn(`could not flush traces: ${err.message}`));
  }
}
