import { BullModule, InjectQueue, getQueueToken } from '@nestjs/bullmq';
import { DynamicModule, Inject, Injectable, Module, type Provider } from '@nestjs/common';
import type { JobsOptions, Queue } from 'bullmq';
import { STAGE_JOB_NAME, StageJobSchema, type Stage, type StageJob } from '@libs/contracts';
import { queuePrefix, redisOptions, redisUrl, stageJobOptions } from './config';

export const STAGE_QUEUES = Symbol('STAGE_QUEUES');

/** Enqueues stage jobs; the moderation id is the BullMQ job id so retries and duplicate submissions never fork. */
@Injectable()
export class StageDispatcher {
  constructor(@Inject(STAGE_QUEUES) private readonly queues: Partial<Record<Stage, Queue>>) {}

  queue(stage: Stage): Queue {
    const queue = this.queues[stage];
    if (!queue) throw new Error(`queue ${stage} is not registered in this role`);
    return queue;
  }

  async enqueue(stage: Stage, job: StageJob, opts: JobsOptions = {}): Promise<void> {
    const data = StageJobSchema.parse(job);
    await this.queue(stage).add(STAGE_JOB_NAME, data, { ...opts, jobId: data.id });
  }

  async enqueueMany(stage: Stage, jobs: StageJob[]): Promise<void> {
    if (jobs.length === 0) return;
    await this.queue(stage).addBulk(
      jobs.map((job) => ({ name: STAGE_JOB_NAME, data: StageJobSchema.parse(job), opts: { jobId: job.id } })),
    );
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
}

/**
 * BullMQ wiring for one role: connection from REDIS_URL, the hash-tag prefix, and the stage queues it
 * produces to or consumes from, each with its default job options.
 */
@Module({})
export class StageQueuesModule {
  static register(stages: Stage[], env: NodeJS.ProcessEnv = process.env): DynamicModule {
    const queuesProvider: Provider = {
      provide: STAGE_QUEUES,
      inject: stages.map((s) => getQueueToken(s)),
      useFactory: (...queues: Queue[]) => Object.fromEntries(stages.map((s, i) => [s, queues[i]])),
    };
    const bullRoot = BullModule.forRoot({ connection: redisOptions(redisUrl(env)), prefix: queuePrefix(env) });
    const bullQueues = BullModule.registerQueue(
      ...stages.map((name) => ({ name, defaultJobOptions: stageJobOptions(name, env) })),
    );
    return {
      module: StageQueuesModule,
      imports: [bullRoot, bullQueues],
      providers: [queuesProvider, StageDispatcher],
      exports: [StageDispatcher, STAGE_QUEUES, bullQueues],
    };
  }
}

export { InjectQueue };
