import { etaConfigFromEnv, type EtaConfig } from '@libs/safety';

/**
 * Env variables of the evaluator role (the aligner reads the same). Thresholds and policy are the safety
 * library's: ETA_TAU_PRE, ETA_TAU_POST, ETA_POLICY, ETA_UNSAFE_IMAGE_TEXT.
 */
export const EVALUATOR_ENV = {
  clipPackDir: 'CLIP_PACK_DIR',
  rewardPackDir: 'REWARD_PACK_DIR',
  executionProviders: 'EXECUTION_PROVIDERS',
} as const;

export const DEFAULT_CLIP_PACK_DIR = 'models/factory-clip';
export const DEFAULT_REWARD_PACK_DIR = 'models/factory-guard';

export interface EvaluatorConfig {
  clipPackDir: string;
  rewardPackDir: string;
  executionProviders: string[];
  eta: EtaConfig;
}

export const EVALUATOR_CONFIG = Symbol('EVALUATOR_CONFIG');

export function evaluatorConfigFromEnv(env: NodeJS.ProcessEnv = process.env): EvaluatorConfig {
  return {
    clipPackDir: env[EVALUATOR_ENV.clipPackDir] || DEFAULT_CLIP_PACK_DIR,
    rewardPackDir: env[EVALUATOR_ENV.rewardPackDir] || DEFAULT_REWARD_PACK_DIR,
    executionProviders: (env[EVALUATOR_ENV.executionProviders] || 'cpu').split(',').map((s) => s.trim()).filter(Boolean),
    eta: etaConfigFromEnv(env),
  };
}
