/**
 * ETA's evaluator on real CLIP + reward packs, thresholds from ETA_* env or the reference defaults: what the
 * evaluator role binds to its AnswerEvaluator port and the aligner scores its candidates with.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Logger } from '@nestjs/common';
import { EXECUTION_ENV, executionFromEnv, openClassifier, openClip, type ClipEmbedder } from '@libs/vlm';
import { readSetting } from '@libs/settings';
import { coalescedClassifier, coalescedClip } from './call-coalescer';
import { etaConfigFromEnv, type EtaConfig, type EtaPolicy } from './config';
import { EtaEvaluator, etaDecision, type AnswerCategories } from './eta-evaluator';

/** Env variables of the evaluator packs (the evaluator and aligner roles read the same). */
export const EVALUATOR_ENV = {
  clipPackDir: 'CLIP_PACK_DIR',
  rewardPackDir: 'REWARD_PACK_DIR',
  executionProviders: EXECUTION_ENV.providers,
  requireExecutionProvider: EXECUTION_ENV.require,
} as const;

export const DEFAULT_CLIP_PACK_DIR = 'models/factory-clip';
export const DEFAULT_REWARD_PACK_DIR = 'models/factory-guard';

export interface EvaluatorConfig {
  clipPackDir: string;
  rewardPackDir: string;
  executionProviders: string[];
  /** The provider CLIP and the reward model must land on (REQUIRE_EXECUTION_PROVIDER); undefined: any of the list. */
  requireExecutionProvider?: string;
  /** ORT_INTRA_OP_THREADS (default: the CPU allotment) and ORT_SPIN_WAIT (default: off for these sessions). */
  intraOpNumThreads?: number;
  spinWait?: boolean;
  eta: EtaConfig;
}

export function evaluatorConfigFromEnv(env: NodeJS.ProcessEnv = process.env): EvaluatorConfig {
  const execution = executionFromEnv(env);
  return {
    clipPackDir: readSetting<string>(env, EVALUATOR_ENV.clipPackDir) ?? DEFAULT_CLIP_PACK_DIR,
    rewardPackDir: readSetting<string>(env, EVALUATOR_ENV.rewardPackDir) ?? DEFAULT_REWARD_PACK_DIR,
    executionProviders: execution.executionProviders!,
    requireExecutionProvider: execution.requireExecutionProvider,
    intraOpNumThreads: execution.intraOpNumThreads,
    spinWait: execution.spinWait,
    eta: etaConfigFromEnv(env),
  };
}

export interface SafetyEvaluation extends AnswerCategories {
  scores: { image_risk: number | null; answer_safety: number | null };
  thresholds: { image_risk: number; answer_safety: number };
  /** Whether the job goes to the aligner, under the job's policy. */
  flagged: boolean;
}

/** Name and content fingerprint of a model pack, from its manifest of file hashes. */
export function packIdentity(dir: string): { name: string; fingerprint: string } {
  try {
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { name?: string; files?: unknown };
    return {
      name: manifest.name ?? dir,
      fingerprint: createHash('sha256')
        .update(JSON.stringify(manifest.files ?? manifest))
        .digest('hex'),
    };
  } catch {
    return {
      name: dir,
      fingerprint: createHash('sha256')
        .update(readFileSync(join(dir, 'config.json')))
        .digest('hex'),
    };
  }
}

export interface SafetyEvaluator {
  evaluate(input: { prompt: string; image?: Uint8Array; answer: string; policy: EtaPolicy }): Promise<SafetyEvaluation>;
  /** The scoring models and the version of the policy (thresholds included) verdicts are judged under. */
  describe(): { name: string; fingerprint: string; policyVersion: string };
  close(): Promise<void>;
  readonly eta: EtaEvaluator;
  readonly clip: ClipEmbedder;
}

export async function openSafetyEvaluator(config: EvaluatorConfig): Promise<SafetyEvaluator> {
  const options = {
    executionProviders: config.executionProviders,
    requireExecutionProvider: config.requireExecutionProvider,
    intraOpNumThreads: config.intraOpNumThreads,
    spinWait: config.spinWait,
  };
  const [rawClip, rawReward] = await Promise.all([openClip(config.clipPackDir, options), openClassifier(config.rewardPackDir, options)]);
  // Every job the evaluator (or the aligner's scoring) holds shares CLIP and reward calls with the others.
  const clip = coalescedClip(rawClip);
  const reward = coalescedClassifier(rawReward);
  const eta = new EtaEvaluator({ clip, reward }, config.eta);
  const clipId = packIdentity(config.clipPackDir);
  const rewardId = packIdentity(config.rewardPackDir);
  const fingerprint = createHash('sha256').update(clipId.fingerprint).update(rewardId.fingerprint).digest('hex');
  // Verdicts name the exact scoring setup: models, thresholds, texts. Any change gives another policy_version.
  const policyVersion = `eta-${createHash('sha256')
    .update(
      JSON.stringify({
        fingerprint,
        tauPre: eta.config.tauPre,
        tauPost: eta.config.tauPost,
        text: eta.config.unsafeImageText,
        rm: eta.config.rmPrompt,
        categories: eta.config.categoryThresholds,
      }),
    )
    .digest('hex')
    .slice(0, 12)}`;
  new Logger('EtaEvaluator').log(
    `CLIP ${clipId.name}, reward ${rewardId.name} on ${config.executionProviders.join(', ')}; tau_pre ${eta.config.tauPre}, tau_post ${eta.config.tauPost}; ${policyVersion}`,
  );
  return {
    eta,
    clip,
    async evaluate({ image, answer, policy }): Promise<SafetyEvaluation> {
      const r = await eta.evaluate({ image, answer });
      // The job's policy (fixed at intake) decides, not the process default, so a rollout never re-judges queued jobs.
      const categoryFlagged = Object.values(r.categories).some(Boolean);
      const decision = etaDecision(r.scores.image_risk, r.scores.answer_safety, { ...eta.config, policy }, categoryFlagged);
      return {
        scores: r.scores,
        categories: r.categories,
        category_scores: r.category_scores,
        thresholds: { image_risk: r.thresholds.tau_pre, answer_safety: r.thresholds.tau_post },
        flagged: decision.flagged,
      };
    },
    describe: () => ({ name: `${clipId.name}+${rewardId.name}`, fingerprint, policyVersion }),
    async close() {
      await Promise.all([clip.close(), reward.close()]);
    },
  };
}
