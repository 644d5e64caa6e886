import {
  alignerConfigFromEnv as safetyAlignerConfigFromEnv,
  BLOCKED_ANSWER,
  evaluatorConfigFromEnv,
  type AlignerConfig as BestOfNConfig,
  type EvaluatorConfig,
} from '@libs/safety';
import { readSetting } from '@libs/settings';
import { DEFAULT_VLM_PACK_DIR, executionFromEnv, schedulerFromEnv, VLM_ENV } from '@libs/worker';
import type { PlainDecoderChoice, SchedulerOptions } from '@libs/vlm';

/**
 * Env of the aligner role: the VLM's (VLM_PACK_DIR, EXECUTION_PROVIDERS), the evaluator's (CLIP_PACK_DIR,
 * REWARD_PACK_DIR, ETA_*), the safety library's best-of-N settings (ALIGNER_N, ALIGNER_PREFIX,
 * ALIGNER_MAX_TOTAL_TOKENS, ALIGNER_TEMPERATURE, ALIGNER_SEED) and the text of a blocked answer.
 */
export const ALIGNER_ENV = { blockedAnswer: 'ALIGNER_BLOCKED_ANSWER' } as const;

export interface AlignerConfig {
  packDir: string;
  executionProviders: string[];
  /** The provider the sessions must land on (REQUIRE_EXECUTION_PROVIDER); undefined: any of the list. */
  requireExecutionProvider?: string;
  intraOpNumThreads?: number;
  /** ORT_SPIN_WAIT; undefined: off (libs/worker WORKER_ENGINE_SPIN_WAIT). */
  spinWait?: boolean;
  /** VLM_PLAIN_DECODER; undefined: libs/vlm's default. */
  plainDecoder?: PlainDecoderChoice;
  /** The engine scheduler's budgets (VLM_MAX_BATCH_SIZE, ...); unset fields: libs/vlm's defaults. */
  scheduler: SchedulerOptions;
  evaluator: EvaluatorConfig;
  /** Best-of-N settings; `blockedAnswer` (ALIGNER_BLOCKED_ANSWER, else libs/safety's BLOCKED_ANSWER) is what a blocked verdict shows. */
  bestOfN: BestOfNConfig;
}

export const ALIGNER_CONFIG = Symbol('ALIGNER_CONFIG');

export function alignerConfigFromEnv(env: NodeJS.ProcessEnv = process.env): AlignerConfig {
  const execution = executionFromEnv(env);
  return {
    packDir: readSetting<string>(env, VLM_ENV.packDir) ?? DEFAULT_VLM_PACK_DIR,
    executionProviders: execution.executionProviders!,
    requireExecutionProvider: execution.requireExecutionProvider,
    intraOpNumThreads: execution.intraOpNumThreads,
    spinWait: execution.spinWait,
    plainDecoder: readSetting<PlainDecoderChoice>(env, VLM_ENV.plainDecoder),
    scheduler: schedulerFromEnv(env),
    evaluator: evaluatorConfigFromEnv(env),
    bestOfN: { ...safetyAlignerConfigFromEnv(env), blockedAnswer: readSetting<string>(env, ALIGNER_ENV.blockedAnswer) ?? BLOCKED_ANSWER },
  };
}
