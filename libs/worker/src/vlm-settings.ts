import type { WorkerOptions } from 'bullmq';
import type { Stage } from '@libs/contracts';
import { QUEUE_ENV, stageWorkerOptions } from '@libs/queue';
import { readSetting } from '@libs/settings';
import { EXECUTION_ENV, resolveSchedulerOptions, type SchedulerOptions } from '@libs/vlm';

/** The continuous-batching scheduler's budgets (libs/vlm SchedulerOptions; defaults in DEFAULT_SCHEDULER_OPTIONS). */
export const SCHEDULER_ENV = {
  maxBatchSize: 'VLM_MAX_BATCH_SIZE',
  minBatchSize: 'VLM_MIN_BATCH_SIZE',
  maxPrefillTokens: 'VLM_MAX_PREFILL_TOKENS',
  maxBatchTokens: 'VLM_MAX_BATCH_TOKENS',
  maxWaitMs: 'VLM_MAX_WAIT_MS',
} as const;

/** Env variables of the VLM engine, read by every role that loads one (generator, aligner). */
export const VLM_ENV = {
  packDir: 'VLM_PACK_DIR',
  executionProviders: EXECUTION_ENV.providers,
  requireExecutionProvider: EXECUTION_ENV.require,
  intraOpThreads: EXECUTION_ENV.intraOpThreads,
  ...SCHEDULER_ENV,
} as const;

export const DEFAULT_VLM_PACK_DIR = 'models/factory-vlm';

/** EXECUTION_PROVIDERS, REQUIRE_EXECUTION_PROVIDER and ORT_INTRA_OP_THREADS, parsed once for every role (libs/vlm). */
export { executionFromEnv } from '@libs/vlm';

/** The scheduler budgets set in the environment; unset ones stay unset, so libs/vlm's defaults apply (one place). */
export function schedulerFromEnv(env: NodeJS.ProcessEnv = process.env): SchedulerOptions {
  const out: SchedulerOptions = {};
  for (const [key, name] of Object.entries(SCHEDULER_ENV) as [keyof SchedulerOptions, string][]) {
    const value = readSetting<number>(env, name);
    if (value !== undefined) out[key] = value;
  }
  return out;
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
  const explicit = readSetting<number>(env, `${stage.toUpperCase()}_${QUEUE_ENV.concurrency}`) ?? readSetting<number>(env, QUEUE_ENV.concurrency);
  if (explicit !== undefined) return options;
  const { maxBatchSize } = resolveSchedulerOptions(schedulerFromEnv(env));
  return { ...options, concurrency: Math.max(1, Math.floor(maxBatchSize / Math.max(1, rowsPerJob))) };
}
