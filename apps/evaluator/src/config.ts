/**
 * Env of the evaluator role: the evaluator packs' (CLIP_PACK_DIR, REWARD_PACK_DIR, EXECUTION_PROVIDERS, read by
 * @libs/safety, which the aligner reads the same way) and the safety library's thresholds and policy: ETA_TAU_PRE,
 * ETA_TAU_POST, ETA_POLICY, ETA_UNSAFE_IMAGE_TEXT.
 */
export { DEFAULT_CLIP_PACK_DIR, DEFAULT_REWARD_PACK_DIR, EVALUATOR_ENV, evaluatorConfigFromEnv, type EvaluatorConfig } from '@libs/safety';

export const EVALUATOR_CONFIG = Symbol('EVALUATOR_CONFIG');
