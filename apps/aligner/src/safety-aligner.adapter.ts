/**
 * Binds the AnswerAligner port to @libs/safety's BestOfNAligner, scored by the same EtaEvaluator binding as the
 * evaluator role's (@libs/safety's openSafetyEvaluator).
 * The one place that knows the safety library's aligner API.
 */
import { Logger } from '@nestjs/common';
import { BestOfNAligner, openSafetyEvaluator, sentenceEndTokenIds } from '@libs/safety';
import type { VlmEngine } from '@libs/vlm';
import type { AlignedAnswer, AnswerAligner } from './answer-aligner';
import type { AlignerConfig } from './config';

export async function openSafetyAligner(engine: VlmEngine, config: AlignerConfig): Promise<AnswerAligner> {
  const evaluator = await openSafetyEvaluator(config.evaluator);
  const endTokenIds = sentenceEndTokenIds(config.packDir, config.bestOfN.sentenceEnds);
  const aligner = new BestOfNAligner({ engine, evaluator: evaluator.eta, clip: evaluator.clip, endTokenIds }, config.bestOfN);
  new Logger('BestOfNAligner').log(
    `n ${aligner.config.n}, prefix "${aligner.config.prefix}", max ${aligner.config.maxTotalTokens} tokens, ${endTokenIds.length} sentence-end tokens`,
  );
  return {
    async align(request): Promise<AlignedAnswer> {
      const out = await aligner.align(request);
      return {
        answer: out.finalAnswer,
        n: out.n,
        chosen: out.chosen,
        candidatesScored: out.candidatesScored,
        answerSafety: out.final.answer_safety,
        safe: out.final.passed,
        categories: out.final.categories,
        maxDecodeBatch: out.stats.maxBatch,
      };
    },
    close: () => evaluator.close(),
  };
}
