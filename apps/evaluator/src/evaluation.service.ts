import { Inject, Injectable } from '@nestjs/common';
import { ModerationError, type StageJob } from '@libs/contracts';
import { BLOB_STORE, type BlobStore } from '@libs/storage';
import { ANSWER_EVALUATOR, type AnswerEvaluation, type AnswerEvaluator } from './answer-evaluator';

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
    return { ...result, ms: Date.now() - started };
  }
}
