import { readSetting } from '@libs/settings';
import { DEFAULT_VLM_PACK_DIR, executionFromEnv, schedulerFromEnv, VLM_ENV } from '@libs/worker';
import type { PlainDecoderChoice, SchedulerOptions } from '@libs/vlm';
import { DETECTOR_ENV } from '@libs/revision';

/** Env variables of the generator role: the VLM engine's (@libs/worker), the answer length and the hidden-state detector. */
export const GENERATOR_ENV = {
  ...VLM_ENV,
  maxNewTokens: 'GENERATOR_MAX_NEW_TOKENS',
  detectorFile: DETECTOR_ENV,
  detectorFlags: 'ETA_DETECTOR_FLAGS',
} as const;

export interface GeneratorConfig {
  packDir: string;
  executionProviders: string[];
  /** The provider the sessions must land on (REQUIRE_EXECUTION_PROVIDER); undefined: any of the list. */
  requireExecutionProvider?: string;
  /** Undefined: the pack's generation_config decides. */
  maxNewTokens?: number;
  intraOpNumThreads?: number;
  /** ORT_SPIN_WAIT; undefined: off (libs/worker WORKER_ENGINE_SPIN_WAIT). */
  spinWait?: boolean;
  /** VLM_PLAIN_DECODER; undefined: libs/vlm's default. */
  plainDecoder?: PlainDecoderChoice;
  /** The engine scheduler's budgets (VLM_MAX_BATCH_SIZE, ...); unset fields: libs/vlm's defaults. */
  scheduler: SchedulerOptions;
  /** DETECTOR_FILE; undefined: the default artifact when it fits the pack (libs/revision resolveDetector). */
  detectorFile?: string;
  /** ETA_DETECTOR_FLAGS: stamped on each job, so the evaluator ORs the detector's flag into the policy's. */
  detectorFlags: boolean;
}

export const GENERATOR_CONFIG = Symbol('GENERATOR_CONFIG');

export function generatorConfigFromEnv(env: NodeJS.ProcessEnv = process.env): GeneratorConfig {
  const execution = executionFromEnv(env);
  return {
    packDir: readSetting<string>(env, GENERATOR_ENV.packDir) ?? DEFAULT_VLM_PACK_DIR,
    executionProviders: execution.executionProviders!,
    requireExecutionProvider: execution.requireExecutionProvider,
    maxNewTokens: readSetting<number>(env, GENERATOR_ENV.maxNewTokens),
    intraOpNumThreads: execution.intraOpNumThreads,
    spinWait: execution.spinWait,
    plainDecoder: readSetting<PlainDecoderChoice>(env, VLM_ENV.plainDecoder),
    scheduler: schedulerFromEnv(env),
    detectorFile: readSetting<string>(env, GENERATOR_ENV.detectorFile),
    detectorFlags: readSetting<boolean>(env, GENERATOR_ENV.detectorFlags) ?? false,
  };
}
