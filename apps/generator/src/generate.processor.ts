import { Processor } from '@nestjs/bullmq';
import { Inject } from '@nestjs/common';
import type { Job } from 'bullmq';
import type { StageJob, Verdict } from '@libs/contracts';
import { StageDispatcher } from '@libs/queue';
import { annotateActiveSpan, ATTR } from '@libs/telemetry';
import { VERDICT_STORE, type VerdictStore } from '@libs/storage';
import { gpuStageWorkerOptions, StageWorkerHost } from '@libs/worker';
import { GenerationService } from './generation.service';

// As many jobs as the engine batches: each job's request joins the running decode batch, and its answer is written
// as soon as its own row finishes, not when the whole batch does.
@Processor('generate', gpuStageWorkerOptions('generate'))
export class GenerateProcessor extends StageWorkerHost {
  protected readonly stage = 'generate' as const;
  protected readonly failureCode = 'generation_failed' as const;

  constructor(
    @Inject(VERDICT_STORE) verdicts: VerdictStore,
    private readonly generation: GenerationService,
    private readonly dispatcher: StageDispatcher,
  ) {
    super(verdicts);
  }

  protected async run(job: Job<StageJob>, verdict: Verdict): Promise<void> {
    // A run that died after recording its answer (before BullMQ saw it complete) does not burn the GPU again: only the
    // detector's prefill runs again (when one is configured), since its reading was not recorded with the answer.
    if (verdict.original_answer !== null && verdict.timings.generate_ms !== undefined) {
      annotateActiveSpan({ [ATTR.model]: verdict.model?.name, [ATTR.skipped]: 'answer_recorded' });
      const detector = await this.generation.detect(job.data, this.tenantShare.groupOf(job.data));
      await this.dispatcher.enqueue('evaluate', { ...job.data, answer: verdict.original_answer, attempt: verdict.attempts, detector });
      return;
    }
    const out = await this.generation.generate(job.data, this.tenantShare.groupOf(job.data));
    annotateActiveSpan({ [ATTR.model]: out.model.name, [ATTR.prefillBatch]: out.batch?.prefill, [ATTR.decodeBatch]: out.batch?.maxDecode });
    await this.verdicts.patch(job.data.id, (v) => ({
      original_answer: out.answer,
      model: out.model,
      revision: out.revision,
      timings: { ...v.timings, generate_ms: out.ms, generate_tokens: out.tokens },
    }));
    await this.dispatcher.enqueue('evaluate', { ...job.data, answer: out.answer, attempt: verdict.attempts, detector: out.detector });
  }
}
