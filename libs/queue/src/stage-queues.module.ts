import { BullModule, InjectQueue, getQueueToken } from '@nestjs/bullmq';
import { DynamicModule, Inject, Injectable, Module, Optional, type Provider } from '@nestjs/common';
import { Job, type JobsOptions, type Queue } from 'bullmq';
import { STAGE_JOB_NAME, StageJobSchema, type Stage, type StageJob } from '@libs/contracts';
import {
  RESERVATION_TTL_MS,
  RESERVE_LUA,
  RESERVE_OUTCOMES,
  backlogKeys,
  newReservationToken,
  reservationMember,
  tenantHex,
  type Reservation,
  type ReserveResult,
  type TenantAdmission,
} from './backlog';
import { queuePrefix, redisOptions, redisUrl, stageJobOptions } from './config';
import { FairScheduler } from './fairness';
import { stageQueueKeys } from './keys';
import { DEFAULT_REDIS_COMMAND_TIMEOUT_MS, producerRedisOptions } from './producer-connection';

/** An ioredis MULTI on a queue connection, as BullMQ's addJob takes it (commands queue until exec()). */
export interface StageTransaction {
  eval(script: string, numKeys: number, ...args: (string | number)[]): StageTransaction;
  exec(): Promise<[Error | null, unknown][] | null>;
}

interface ScriptClient {
  eval(script: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
  zrem(key: string, ...members: string[]): Promise<number>;
  multi(): StageTransaction;
}

export const STAGE_QUEUES = Symbol('STAGE_QUEUES');
/** The role's FairScheduler (from FAIR_SCHEDULING, FAIR_BURST_JOBS, FAIR_WEIGHTS). */
export const FAIR_SCHEDULER = Symbol('FAIR_SCHEDULER');

/**
 * Enqueues stage jobs; the moderation id is the BullMQ job id so retries and duplicate submissions never fork.
 * Every add (intake's creation, generate -> evaluate, evaluate -> align) takes its BullMQ priority from the fair
 * scheduler first, so each stage is shared between the tenants waiting in it (fairness.ts); with fair scheduling off
 * jobs carry no priority and the stage is FIFO.
 */
@Injectable()
export class StageDispatcher {
  constructor(
    @Inject(STAGE_QUEUES) private readonly queues: Partial<Record<Stage, Queue>>,
    @Optional() @Inject(FAIR_SCHEDULER) private readonly fair: FairScheduler = FairScheduler.fromEnv(),
  ) {}

  queue(stage: Stage): Queue {
    const queue = this.queues[stage];
    if (!queue) throw new Error(`queue ${stage} is not registered in this role`);
    return queue;
  }

  /** An explicit `opts.priority` is kept (no fair priority is taken for it). */
  async enqueue(stage: Stage, job: StageJob, opts: JobsOptions = {}): Promise<void> {
    const queue = this.queue(stage);
    const data = StageJobSchema.parse(job);
    const priority = opts.priority ?? (await this.fairPriorities(stage, [data]))?.[0];
    await queue.add(STAGE_JOB_NAME, data, { ...opts, ...(priority ? { priority } : {}), jobId: data.id });
  }

  async enqueueMany(stage: Stage, jobs: StageJob[]): Promise<void> {
    if (jobs.length === 0) return;
    const queue = this.queue(stage);
    const data = jobs.map((job) => StageJobSchema.parse(job));
    const priorities = await this.fairPriorities(stage, data);
    await queue.addBulk(
      data.map((job, i) => ({ name: STAGE_JOB_NAME, data: job, opts: { jobId: job.id, ...(priorities ? { priority: priorities[i] } : {}) } })),
    );
  }

  /** One fair-scheduler call for jobs about to enter `stage` (in add order); undefined when fair scheduling is off. */
  private async fairPriorities(stage: Stage, jobs: StageJob[]): Promise<number[] | undefined> {
    if (!this.fair.enabled) return undefined;
    const tenants = jobs.map((job) => job.tenant);
    return this.fair.priorities(await this.client(), this.prefix, stage, tenants);
  }

  /** Jobs waiting, delayed or running across the registered stages: the backlog intake compares with its limit. */
  async backlog(): Promise<number> {
    let total = 0;
    for (const queue of Object.values(this.queues)) {
      if (!queue) continue;
      const counts = await queue.getJobCounts('wait', 'prioritized', 'delayed', 'active');
      total += Object.values(counts).reduce((a, b) => a + b, 0);
    }
    return total;
  }

  all(): Queue[] {
    return Object.values(this.queues).filter((q): q is Queue => Boolean(q));
  }

  stages(): Stage[] {
    return (Object.keys(this.queues) as Stage[]).filter((s) => this.queues[s]);
  }

  /** The key prefix the queues live under (the hash tag every intake script keeps its keys in). */
  get prefix(): string {
    const queue = this.all()[0];
    if (!queue) throw new Error('no stage queue is registered in this role');
    return queue.opts.prefix ?? 'bull';
  }

  /** How long a producer waits for one Redis command (the connection's commandTimeout). */
  get commandTimeoutMs(): number {
    const connection = this.all()[0]?.opts.connection as { commandTimeout?: number } | undefined;
    return connection?.commandTimeout ?? DEFAULT_REDIS_COMMAND_TIMEOUT_MS;
  }

  /** The BullMQ hash of a job in a stage queue. */
  jobKey(stage: Stage, id: string): string {
    return stageQueueKeys(this.prefix, stage).job(id);
  }

  private async client(): Promise<ScriptClient> {
    return (await this.all()[0].getBackend().client) as unknown as ScriptClient;
  }

  /**
   * Reserves `items` slots of the cluster-wide backlog limit: jobs not finished in any registered stage queue plus
   * every other request's outstanding reservation must stay within `limit`, and, with `tenant`, the tenant's items in
   * flight plus its own reservations within its in-flight limit and backlog share (see RESERVE_LUA).
   */
  async reserve(items: number, limit: number, options: { tenant?: TenantAdmission; ttlMs?: number } = {}): Promise<ReserveResult> {
    const { keys, lists } = backlogKeys(this.prefix, this.stages());
    const { tenant, ttlMs = RESERVATION_TTL_MS } = options;
    const token = newReservationToken();
    const member = reservationMember(token, tenant?.tenant, items);
    const client = await this.client();
    let reply: [number, number, number, number];
    try {
      reply = (await client.eval(
        RESERVE_LUA,
        keys.length,
        ...keys,
        items,
        limit,
        token,
        ttlMs,
        lists,
        tenant?.tenant ?? '',
        tenantHex(tenant?.tenant),
        tenant?.maxInFlight ?? 0,
        tenant?.backlogShareCap ?? 0,
      )) as [number, number, number, number];
    } catch (err) {
      // Timed out, the script may still run when Redis wakes up; this release queues behind it on the connection.
      client.zrem(keys[0], member).catch(() => undefined);
      throw err;
    }
    const [code, backlog, redisTimeMs, tenantHeld] = reply;
    const outcome = RESERVE_OUTCOMES[code];
    if (outcome !== 'admitted') return { ok: false, reason: outcome ?? 'backlog_full', backlog, tenantHeld };
    return { ok: true, backlog, tenantHeld, reservation: { member, items, redisTimeMs, receivedAt: Date.now() } };
  }

  /** Gives reserved slots back (a commit removes its reservation itself). */
  async release(reservation: Reservation): Promise<void> {
    const client = await this.client();
    await client.zrem(backlogKeys(this.prefix, []).keys[0], reservation.member);
  }

  /** A MULTI on the queue connection: jobs added with addToTransaction and scripts queued with eval() commit together. */
  async transaction(): Promise<StageTransaction> {
    return (await this.client()).multi();
  }

  /** Queues the BullMQ inserts of `jobs` (with the stage's default job options) on a transaction. */
  async addToTransaction(tx: StageTransaction, stage: Stage, jobs: StageJob[]): Promise<void> {
    const queue = this.queue(stage);
    const data = jobs.map((job) => StageJobSchema.parse(job));
    // Sent at once, outside the MULTI (whose commands wait for exec()): the priorities must be known to queue the inserts.
    const priorities = await this.fairPriorities(stage, data);
    for (const [i, job] of data.entries()) {
      const opts: JobsOptions = { ...queue.defaultJobOptions, jobId: job.id, ...(priorities ? { priority: priorities[i] } : {}) };
      const bullJob = new Job(queue, STAGE_JOB_NAME, job, opts, job.id);
      // On a MULTI the insert only queues; its result arrives with exec().
      await bullJob.addJob(tx as never);
    }
  }

  /** Removes jobs that were added (compensation when a creation turned out partial). */
  async remove(stage: Stage, ids: string[]): Promise<void> {
    const queue = this.queue(stage);
    for (const id of ids) await queue.remove(id).catch(() => undefined);
  }
}

/**
 * BullMQ wiring for one role: connection from REDIS_URL, the hash-tag prefix, and the stage queues it
 * produces to or consumes from, each with its default job options.
 */
@Module({})
export class StageQueuesModule {
  /**
   * `producer: true` (the intake) connects with producerRedisOptions: fail fast, never replay a command later.
   * Worker roles keep redisOptions: their @Processor workers take the same connection and need blocking commands.
   */
  static register(stages: Stage[], env: NodeJS.ProcessEnv = process.env, options: { producer?: boolean } = {}): DynamicModule {
    const queuesProvider: Provider = {
      provide: STAGE_QUEUES,
      inject: stages.map((s) => getQueueToken(s)),
      useFactory: (...queues: Queue[]) => Object.fromEntries(stages.map((s, i) => [s, queues[i]])),
    };
    const connection = options.producer ? producerRedisOptions(redisUrl(env), env) : redisOptions(redisUrl(env));
    const bullRoot = BullModule.forRoot({ connection, prefix: queuePrefix(env) });
    const bullQueues = BullModule.registerQueue(...stages.map((name) => ({ name, defaultJobOptions: stageJobOptions(name, env) })));
    return {
      module: StageQueuesModule,
      imports: [bullRoot, bullQueues],
      providers: [queuesProvider, { provide: FAIR_SCHEDULER, useValue: FairScheduler.fromEnv(env) }, StageDispatcher],
      exports: [StageDispatcher, STAGE_QUEUES, bullQueues],
    };
  }
}

export { InjectQueue };
