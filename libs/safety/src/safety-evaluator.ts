/**
 * Binds the AnswerEvaluator port to @libs/safety's EtaEvaluator (real CLIP + reward packs, thresholds from
 * ETA_* env or the reference defaults). The one place that knows the safety library's evaluator API.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Logger } from '@nestjs/common';
import { EtaEvaluator, etaDecision } from '@libs/safety';
import { openClassifier, openClip, type ClipEmbedder } from '@libs/vlm';
import type { AnswerEvaluation, AnswerEvaluator } from './answer-evaluator';
import type { EvaluatorConfig } from './config';

/** Name and content fingerprint of a model pack, from its manifest of file hashes. */
export function packIdentity(dir: string): { name: string; fingerprint: string } {
  try {
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { name?: string; files?: unknown };
    return { name: manifest.name ?? dir, fingerprint: createHash('sha256').update(JSON.stringify(manifest.files ?? manifest)).digest('hex') };
  } catch {
    return { name: dir, fingerprint: createHash('sha256').update(readFileSync(join(dir, 'config.json'))).digest('hex') };
  }
}

export interface SafetyEvaluator extends AnswerEvaluator {
  readonly eta: EtaEvaluator;
  readonly clip: ClipEmbedder;
}

export async function openSafetyEvaluator(config: EvaluatorConfig): Promise<SafetyEvaluator> {
  const options = { executionProviders: config.executionProviders };
  const [clip, reward] = await Promise.all([openClip(config.clipPackDir, options), openClassifier(config.rewardPackDir, options)]);
  const eta = new EtaEvaluator({ clip, reward }, config.eta);
  const clipId = packIdentity(config.clipPackDir);
  const rewardId = packIdentity(config.rewardPackDir);
  const fingerprint = createHash('sha256').update(clipId.fingerprint).update(rewardId.fingerprint).digest('hex');
  // Verdicts name the exact scoring setup: models, thresholds, texts. Any change gives another policy_version.
  const policyVersion = `eta-${createHash('sha256')
    .update(JSON.stringify({ fingerprint, tauPre: eta.config.tauPre, tauPost: eta.config.tauPost, text: eta.config.unsafeImageText, rm: eta.config.rmPrompt }))
    .digest('hex')
    .slice(0, 12)}`;
  new Logger('EtaEvaluator').log(
    `CLIP ${clipId.name}, reward ${rewardId.name} on ${config.executionProviders.join(', ')}; tau_pre ${eta.config.tauPre}, tau_post ${eta.config.tauPost}; ${policyVersion}`,
  );
  return {
    eta,
    clip,
    async evaluate({ image, answer, policy }): Promise<AnswerEvaluation> {
      const r = await eta.evaluate({ image, answer });
      // The job's policy (fixed at intake) decides, not the process default, so a rollout never re-judges queued jobs.
      const decision = etaDecision(r.scores.image_risk, r.scores.answer_safety, { ...eta.config, policy });
      return {
        scores: r.scores,
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
