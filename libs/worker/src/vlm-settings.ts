import { readSetting } from '@libs/settings';
import { EXECUTION_ENV, type SchedulerOptions } from '@libs/vlm';

/** The continuous-batching scheduler's budgets (libs/vlm SchedulerOptions; defaults in DEFAULT_SCHEDULER_OPTIONS). */
export const SCHEDULER_ENV = {
  maxBatchSize: 'VLM_MAX_BATCH_SIZE',
  minBatchSize: 'VLM_MIN_BATCH_SIZE',
  maxPrefillTokens: 'VLM_MAX_PREFILL_TOKENS',
  maxBatchTokens: 'VLM_MAX_BATCH_TOKENS',
  maxWaitMs: 'VLM_MAX_WAIT_MS',
  groupHalfLifeSteps: 'VLM_GROUP_HALF_LIFE_STEPS',
  groupHoldMs: 'VLM_GROUP_HOLD_MS',
} as const;

/** Env variables of the VLM engine, read by every role that loads one (generator, aligner). */
export const VLM_ENV = {
  packDir: 'VLM_PACK_DIR',
  executionProviders: EXECUTION_ENV.providers,
  requireExecutionProvider: EXECUTION_ENV.require,
  intraOpThreads: EXECUTION_ENV.intraOpThreads,
  plainDecoder: 'VLM_PLAIN_DECODER',
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
