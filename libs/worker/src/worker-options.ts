import type { WorkerOptions } from 'bullmq';
import type { Stage } from '@libs/contracts';
import { QUEUE_ENV, stageWorkerOptions } from '@libs/queue';
import { readSetting } from '@libs/settings';
import { resolveSchedulerOptions } from '@libs/vlm';
import { schedulerFromEnv } from './vlm-settings';

/**
 * Jobs the evaluator holds by default: their CLIP and reward calls are coalesced into one batch each (@libs/safety).
 * One generator batch (VLM_MAX_BATCH_SIZE): its jobs complete together, so the evaluator takes them in one call. Its
 * jobs also complete together, a coalesced call at a time; at 16 a newcomer tenant's 20 jobs (the fairness bench's B)
 * needed two calls, and waited for the backlog's call in between.
 */
export const DEFAULT_EVALUATE_CONCURRENCY = 32;

function explicitConcurrency(stage: Stage, env: NodeJS.ProcessEnv): number | undefined {
  return readSetting<number>(env, `${stage.toUpperCase()}_${QUEUE_ENV.concurrency}`) ?? readSetting<number>(env, QUEUE_ENV.concurrency);
}

/**
 * Worker options of a GPU stage. Its concurrency is how many jobs the process holds at once, and so how many rows
 * the engine's scheduler can batch: unless GENERATE_/ALIGN_WORKER_CONCURRENCY or WORKER_CONCURRENCY says
 * otherwise it is the scheduler's batch capacity, `maxBatchSize` jobs for generate and `maxBatchSize / rowsPerJob`
 * for align (each flagged job decodes its best-of-N candidates as `rowsPerJob` rows). One job at a time left the
 * engine decoding one row per forward pass.
 */
export function gpuStageWorkerOptions(stage: Exclude<Stage, 'evaluate'>, env: NodeJS.ProcessEnv = process.env, rowsPerJob = 1): Partial<WorkerOptions> {
  const options = stageWorkerOptions(stage, env);
  if (explicitConcurrency(stage, env) !== undefined) return options;
  const { maxBatchSize } = resolveSchedulerOptions(schedulerFromEnv(env));
  return { ...options, concurrency: Math.max(1, Math.floor(maxBatchSize / Math.max(1, rowsPerJob))) };
}

/**
 * Worker options of the evaluator: it holds DEFAULT_EVALUATE_CONCURRENCY jobs unless EVALUATE_WORKER_CONCURRENCY or
 * WORKER_CONCURRENCY says otherwise, so the jobs it holds share model calls. Its lock (20 s) bounds one blocking
 * call on the main thread; a batch of 32 short answers and 32 images is tens of milliseconds with the shipped packs.
 */
export function evaluateWorkerOptions(env: NodeJS.ProcessEnv = process.env): Partial<WorkerOptions> {
  const options = stageWorkerOptions('evaluate', env);
  if (explicitConcurrency('evaluate', env) !== undefined) return options;
  return { ...options, concurrency: DEFAULT_EVALUATE_CONCURRENCY };
}
