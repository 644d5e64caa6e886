import { Inject, Injectable } from '@nestjs/common';
import { ModerationError, type Scores, type StageJob } from '@libs/contracts';
import { BLOB_STORE, type BlobStore } from '@libs/storage';
import { ANSWER_EVALUATOR, type AnswerEvaluation, type AnswerEvaluator } from './answer-evaluator';

/**
 * The generator's hidden-state detector beside ETA's scores (scores.hidden_risk, thresholds.hidden_risk); it flags the
 * job under every policy only when the generator stamped ETA_DETECTOR_FLAGS on it.
 */
export function withDetector(result: AnswerEvaluation, detector: StageJob['detector']): AnswerEvaluation {
  if (!detector) return result;
  const scores: Scores = { ...result.scores, hidden_risk: detector.hiddenRisk };
  const thresholds: Record<string, number> & AnswerEvaluation['thresholds'] = { ...result.thresholds, hidden_risk: detector.tau };
  return { ...result, scores, thresholds, flagged: result.flagged || (detector.flags && detector.hiddenRisk >= detector.tau) };
}

/** Scores a job's answer (and image) with ETA's evaluators. */
@Injectable()
export class EvaluationService {
  constructor(
    @Inject(ANSWER_EVALUATOR) readonly evaluator: AnswerEvaluator,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
  ) {}

  async evaluate(job: StageJob): Promise<AnswerEvaluation & { ms: number }> {
    if (job.answer === undefined) throw new ModerationError('invalid_request', 'evaluate job carries no answer');
    let image: Uint8Array | undefined;
    if (job.imageSha256) {
      const bytes = await this.blobs.get(job.imageSha256);
      if (!bytes) throw new ModerationError('blob_missing', `image ${job.imageSha256} is not in the blob store`);
      image = bytes;
    }
    const started = Date.now();
    let result: AnswerEvaluation;
    try {
      result = await this.evaluator.evaluate({ prompt: job.prompt, image, answer: job.answer, policy: job.policy });
    } catch (err) {
      // An undecodable image is already a typed ModerationError (bad data, no retry); anything else may pass on a retry.
      if (err instanceof ModerationError) throw err;
      throw new ModerationError('evaluation_failed', err instanceof Error ? err.message : String(err));
    }
    return { ...withDetector(result, job.detector), ms: Date.now() - started };
  }
}
