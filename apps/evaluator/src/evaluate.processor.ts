import { Processor } from '@nestjs/bullmq';
import { Inject } from '@nestjs/common';
import type { Job } from 'bullmq';
import type { StageJob, Verdict } from '@libs/contracts';
import { nextStage, StageDispatcher } from '@libs/queue';
import { annotateActiveSpan, ATTR } from '@libs/telemetry';
import { VERDICT_STORE, type VerdictStore } from '@libs/storage';
import { evaluateWorkerOptions, finishVerdict, StageWorkerHost } from '@libs/worker';
import { EvaluationService } from './evaluation.service';

// Many jobs at once: their CLIP and reward calls are coalesced into shared batches (@libs/safety CallCoalescer).
@Processor('evaluate', evaluateWorkerOptions())
export class EvaluateProcessor extends StageWorkerHost {
  protected readonly stage = 'evaluate' as const;
  protected readonly failureCode = 'evaluation_failed' as const;

  constructor(
    @Inject(VERDICT_STORE) verdicts: VerdictStore,
    private readonly evaluation: EvaluationService,
    private readonly dispatcher: StageDispatcher,
  ) {
    super(verdicts);
  }

  protected async run(job: Job<StageJob>, verdict: Verdict): Promise<void> {
    const result = await this.evaluation.evaluate(job.data);
    const described = this.evaluation.evaluator.describe();
    // The CLIP and reward batch sizes are recorded on this span by the coalesced calls themselves (@libs/safety).
    annotateActiveSpan({ [ATTR.model]: described.name, [ATTR.flagged]: result.flagged });
    const fields = (v: Verdict): Partial<Verdict> => ({
      flagged: result.flagged,
      scores: result.scores,
      thresholds: result.thresholds,
      categories: result.categories,
      category_scores: result.category_scores,
      policy_version: described.policyVersion,
      original_answer: v.original_answer ?? job.data.answer ?? null,
      // Evaluate-only jobs never met the VLM: the verdict names the models that judged them.
      model: v.model ?? { name: described.name, fingerprint: described.fingerprint },
      timings: { ...v.timings, evaluate_ms: result.ms },
    });
    if (nextStage('evaluate', result) === 'align') {
      await this.verdicts.patch(job.data.id, fields);
      await this.dispatcher.enqueue('align', { ...job.data, attempt: verdict.attempts });
      return;
    }
    await finishVerdict(this.verdicts, job.data.id, (v) => ({ ...fields(v), decision: 'pass', final_answer: job.data.answer ?? null }));
  }
}
