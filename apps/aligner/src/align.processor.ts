import { Processor } from '@nestjs/bullmq';
import { Inject } from '@nestjs/common';
import type { Job } from 'bullmq';
import { ModerationError, type StageJob, type Verdict } from '@libs/contracts';
import { ALIGNER_DEFAULTS } from '@libs/safety';
import { readSetting } from '@libs/settings';
import { annotateActiveSpan, ATTR } from '@libs/telemetry';
import { BLOB_STORE, VERDICT_STORE, type BlobStore, type VerdictStore } from '@libs/storage';
import type { VlmEngine } from '@libs/vlm';
import {
  classifyEngineError,
  finishVerdict,
  gpuStageWorkerOptions,
  loadImage,
  REVISION_PROFILES,
  StageWorkerHost,
  VLM_ENGINE,
  type RevisionProfiles,
} from '@libs/worker';
import { ANSWER_ALIGNER, type AnswerAligner } from './answer-aligner';
import { createHash } from 'node:crypto';

/** A seed from the job id: a retried alignment samples the same candidates and reaches the same answer. */
function seedOf(id: string): number {
  return createHash('sha256').update(id).digest().readUInt32BE(0) % 1_000_000_007;
}

/** Runs only for flagged jobs: re-answers with ETA's alignment; a still-unsafe answer is blocked. */
// Several flagged jobs at once: each round's n candidate rows of every held job share the engine's decode batches.
@Processor('align', gpuStageWorkerOptions('align', process.env, readSetting<number>(process.env, 'ALIGNER_N') ?? ALIGNER_DEFAULTS.n))
export class AlignProcessor extends StageWorkerHost {
  protected readonly stage = 'align' as const;
  protected readonly failureCode = 'alignment_failed' as const;

  constructor(
    @Inject(VERDICT_STORE) verdicts: VerdictStore,
    @Inject(ANSWER_ALIGNER) private readonly aligner: AnswerAligner,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    @Inject(REVISION_PROFILES) private readonly profiles: RevisionProfiles,
    @Inject(VLM_ENGINE) private readonly engine: VlmEngine,
  ) {
    super(verdicts);
  }

  protected async run(job: Job<StageJob>, _verdict: Verdict): Promise<void> {
    const image = await loadImage(this.blobs, job.data.imageSha256);
    // The aligned answer comes from the same model state as the original: the job's revision profile applies.
    const profile = this.profiles.resolve(job.data.profile, job.data.tenant);
    const started = Date.now();
    let out;
    try {
      out = await this.aligner.align({
        prompt: job.data.prompt,
        image,
        revision: profile.feed,
        seed: seedOf(job.data.id),
        group: this.tenantShare.groupOf(job.data),
      });
    } catch (err) {
      if (err instanceof ModerationError) throw err;
      throw classifyEngineError(err, 'alignment_failed');
    }
    const ms = Date.now() - started;
    // The conversation's own prefill is one row; its candidates share decode steps with other jobs' rows.
    annotateActiveSpan({ [ATTR.model]: this.engine.info().name, [ATTR.prefillBatch]: 1, [ATTR.decodeBatch]: out.maxDecodeBatch });
    await finishVerdict(this.verdicts, job.data.id, (v) => ({
      decision: out.safe ? 'aligned' : 'blocked',
      final_answer: out.answer,
      scores: { ...(v.scores ?? { image_risk: null, answer_safety: null }), aligned_answer_safety: out.answerSafety },
      aligner: { n: out.n, chosen: out.chosen, candidates_scored: out.candidatesScored },
      timings: { ...v.timings, align_ms: ms },
    }));
  }
}
