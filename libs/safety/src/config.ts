/**
 * ETA constants (Ding et al., ICLR 2025). Defaults are the reference code's (github.com/DripNowhy/ETA; texts
 * verbatim, typos included, because the reward model was prompted with exactly these strings); every value is
 * configuration because our packs have other score scales (docs/safety-methods.md, "Thresholds").
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { DEFAULT_POLICY } from '@libs/contracts';
import { readSetting } from '@libs/settings';

/** `--safety_prompt` default of eta_safetybench.py: the text the image is compared with (pre-generation). */
export const ETA_UNSAFE_IMAGE_TEXT = 'The image contains unsafe/porn/violent/politic/physical harmful/illegal/privacy contents.';

/**
 * `--rm_prompt` default of eta_safetybench.py: the user turn the reward model sees in the post-generation check,
 * instead of the real user query ("pricacy", "reject to" are in the original).
 */
export const ETA_RM_PROMPT_POST =
  'Please give me a response without any safety issues, one word or phrase or number is good. If the response contains instructions of harmful/porn/sexual/unsafe/violence/illegal/pricacy activities, the score will be low. If the response directly reject to the question, and give some helpful advices, the score should be high. If the response only contains a single word or number or phrase, the score will be extremely high.';

/**
 * Default `prompt` of `from_token_to_reward` in generate/base_class.py (commit 1e8ecc1), used to score
 * best-of-N candidates: the post prompt without the "one word or phrase or number" clauses.
 */
export const ETA_RM_PROMPT_BEST_OF_N =
  'Please give me a response without any safety issues. If the response contains instructions of harmful/porn/sexual/unsafe/violence/illegal/pricacy activities, the score will be low. If the response directly reject the question, and give some helpful advices, the score should be high.';

/** Hard-coded `safety_prefix` of the reference: the shallow alignment. */
export const ETA_PREFIX = 'As an AI assistant';

/**
 * 'both': align only when the image AND the answer are flagged (the reference). 'either': when one is.
 * 'answer': when the answer is, whatever the image (harmful requests about harmless-looking photos are then
 * aligned too; the image score is still computed and reported).
 */
export type EtaPolicy = 'both' | 'either' | 'answer';
export const ETA_POLICIES: readonly EtaPolicy[] = ['both', 'either', 'answer'];

/**
 * The answer a `blocked` verdict shows instead of the aligned one, which the final check still judged unsafe
 * (issue 12 item 5: a blocked answer is replaced by a fixed safe refusal; the aligned text is never shown).
 */
export const BLOCKED_ANSWER = "I can't help with that. If you have a question about operating this equipment safely, please ask it.";

/** A harm category is flagged when its sigmoid score reaches this, unless the thresholds file fits another. */
export const DEFAULT_CATEGORY_THRESHOLD = 0.5;

export interface EtaConfig {
  unsafeImageText: string;
  /** Image flagged when max(cos, 0) >= tauPre. Reference 0.16 (CLIP ViT-L/14-336 cosine). */
  tauPre: number;
  /** Answer flagged when reward <= tauPost. Reference 0.06 (ArmoRM-Llama3-8B score). */
  tauPost: number;
  /** @defaultValue DEFAULT_POLICY ('answer'; the reference's is ETA_REFERENCE_POLICY, 'both') */
  policy: EtaPolicy;
  rmPrompt: string;
  /** Classifier label holding the scalar reward; the first label when absent. */
  rewardLabel: string;
  /**
   * Per harm category (the reward pack's other labels, config.json `category_labels`): flagged when
   * sigmoid(logit) >= the threshold. A flagged category flags the answer whatever its reward.
   * @defaultValue {} (every category at DEFAULT_CATEGORY_THRESHOLD)
   */
  categoryThresholds: Readonly<Record<string, number>>;
}

/** The reference's policy (eta_safetybench.py aligns when both evaluators flag); not the product default. */
export const ETA_REFERENCE_POLICY: EtaPolicy = 'both';

export const ETA_DEFAULTS: Readonly<EtaConfig> = Object.freeze({
  unsafeImageText: ETA_UNSAFE_IMAGE_TEXT,
  tauPre: 0.16,
  tauPost: 0.06,
  // The product's default (libs/contracts DEFAULT_POLICY, chosen on calibration), not the reference's.
  policy: DEFAULT_POLICY,
  rmPrompt: ETA_RM_PROMPT_POST,
  rewardLabel: 'reward',
  categoryThresholds: {},
});

export interface AlignerConfig {
  /** Shallow alignment: the assistant turn starts with this. */
  prefix: string;
  /** Candidates per sentence (reference `topk` = 5). */
  n: number;
  /** Token top-k while sampling a candidate (reference: the same `topk` = 5). */
  topK: number;
  /** Softmax temperature (reference `--beta 1.5`). */
  temperature: number;
  /** A candidate sentence ends at a token that decodes to one of these (reference: the '.' token only). */
  sentenceEnds: string[];
  /** Tokens per candidate sentence (reference 70). */
  maxSentenceTokens: number;
  /** Generated tokens in all (reference `--max_new_tokens 1024`). */
  maxTotalTokens: number;
  /** Weight of the CLIP utility term, divided by the sentence index (reference alpha = 1). */
  clipWeight: number;
  rmPrompt: string;
  /** Seed of sentence i's sampling is seed + i (reference seed 1). */
  seed: number;
  /**
   * What a blocked alignment shows instead of its answer.
   * @defaultValue BLOCKED_ANSWER
   */
  blockedAnswer: string;
}

export const ALIGNER_DEFAULTS: Readonly<AlignerConfig> = Object.freeze({
  prefix: ETA_PREFIX,
  n: 5,
  topK: 5,
  temperature: 1.5,
  sentenceEnds: ['.'],
  maxSentenceTokens: 70,
  maxTotalTokens: 1024,
  clipWeight: 1,
  rmPrompt: ETA_RM_PROMPT_BEST_OF_N,
  seed: 1,
  blockedAnswer: BLOCKED_ANSWER,
});

export class SafetyConfigError extends Error {
  readonly name = 'SafetyConfigError';
  readonly code = 'safety_config_invalid';
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new SafetyConfigError(`invalid safety configuration: ${what}`);
}

export function resolveEtaConfig(over: Partial<EtaConfig> = {}): EtaConfig {
  const c = { ...ETA_DEFAULTS, ...stripUndefined(over) };
  check(Number.isFinite(c.tauPre), 'tauPre must be a number');
  check(Number.isFinite(c.tauPost), 'tauPost must be a number');
  check(ETA_POLICIES.includes(c.policy), `policy must be one of ${ETA_POLICIES.map((p) => `"${p}"`).join(', ')}, got ${JSON.stringify(c.policy)}`);
  check(typeof c.unsafeImageText === 'string' && c.unsafeImageText.length > 0, 'unsafeImageText must be non-empty');
  check(typeof c.rmPrompt === 'string' && c.rmPrompt.length > 0, 'rmPrompt must be non-empty');
  check(
    typeof c.categoryThresholds === 'object' && c.categoryThresholds !== null && Object.values(c.categoryThresholds).every((t) => Number.isFinite(t)),
    'categoryThresholds must map category labels to numbers',
  );
  return c;
}

export function resolveAlignerConfig(over: Partial<AlignerConfig> = {}): AlignerConfig {
  const c = { ...ALIGNER_DEFAULTS, ...stripUndefined(over) };
  const posInt = (v: number) => Number.isInteger(v) && v >= 1;
  check(posInt(c.n), 'n must be a positive integer');
  check(posInt(c.topK), 'topK must be a positive integer');
  check(c.temperature > 0, 'temperature must be > 0');
  check(posInt(c.maxSentenceTokens) && posInt(c.maxTotalTokens), 'token limits must be positive integers');
  check(Number.isFinite(c.clipWeight), 'clipWeight must be a number');
  check(Array.isArray(c.sentenceEnds) && c.sentenceEnds.length > 0, 'sentenceEnds must list at least one string');
  check(Number.isInteger(c.seed), 'seed must be an integer');
  check(typeof c.blockedAnswer === 'string' && c.blockedAnswer.trim().length > 0, 'blockedAnswer must be non-empty');
  return c;
}

/**
 * Reads overrides from the environment (ETA_TAU_PRE, ETA_TAU_POST, ETA_POLICY, ETA_UNSAFE_IMAGE_TEXT), for the
 * worker apps; unset variables keep the defaults.
 */
/** Thresholds fitted for the loaded evaluator models (written by `modctl eta-calibrate`). */
export const ETA_CONFIG_ENV = 'ETA_CONFIG';
export const DEFAULT_ETA_CONFIG_PATH = 'config/eta.json';

export interface EtaThresholdsFile {
  tauPre: number;
  tauPost: number;
  /** Per harm category of the reward pack, fitted on calibration (`modctl eta-calibrate`). */
  categoryThresholds?: Record<string, number>;
  clipPack?: string;
  rewardPack?: string;
  fittedOn?: string;
}

/**
 * Thresholds file from ETA_CONFIG, else config/eta.json when it exists. The reference values are a CLIP
 * ViT-L/14-336 cosine and an ArmoRM score; for any other models the file carries them in those models' scale.
 */
export function readEtaThresholdsFile(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): EtaThresholdsFile | undefined {
  const configured = env[ETA_CONFIG_ENV];
  const path = configured ? resolve(cwd, configured) : resolve(cwd, DEFAULT_ETA_CONFIG_PATH);
  if (!configured && !existsSync(path)) return undefined;
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as EtaThresholdsFile;
  if (!Number.isFinite(parsed.tauPre) || !Number.isFinite(parsed.tauPost)) throw new Error(`${path}: tauPre and tauPost must be numbers`);
  return parsed;
}

/** ETA_TAU_PRE / ETA_TAU_POST / ETA_POLICY / ETA_UNSAFE_IMAGE_TEXT override the thresholds file, which overrides the reference defaults. */
export function etaConfigFromEnv(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): EtaConfig {
  const file = readEtaThresholdsFile(env, cwd);
  return resolveEtaConfig({
    tauPre: readSetting<number>(env, 'ETA_TAU_PRE') ?? file?.tauPre,
    tauPost: readSetting<number>(env, 'ETA_TAU_POST') ?? file?.tauPost,
    policy: readSetting<EtaPolicy>(env, 'ETA_POLICY'),
    categoryThresholds: file?.categoryThresholds,
    unsafeImageText: readSetting<string>(env, 'ETA_UNSAFE_IMAGE_TEXT'),
  });
}

/** ALIGNER_N, ALIGNER_PREFIX, ALIGNER_MAX_TOTAL_TOKENS, ALIGNER_TEMPERATURE, ALIGNER_SEED overrides. */
export function alignerConfigFromEnv(env: NodeJS.ProcessEnv = process.env): AlignerConfig {
  const num = (k: string) => readSetting<number>(env, k);
  return resolveAlignerConfig({
    n: num('ALIGNER_N'),
    // An empty ALIGNER_PREFIX is a value (no shallow alignment), not unset.
    prefix: readSetting<string>(env, 'ALIGNER_PREFIX'),
    maxTotalTokens: num('ALIGNER_MAX_TOTAL_TOKENS'),
    temperature: num('ALIGNER_TEMPERATURE'),
    seed: num('ALIGNER_SEED'),
  });
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
