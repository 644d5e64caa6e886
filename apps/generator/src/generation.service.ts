import { Inject, Injectable } from '@nestjs/common';
import { ModerationError, type StageJob } from '@libs/contracts';
import { BLOB_STORE, type BlobStore } from '@libs/storage';
import { detectorScore, type LoadedDetector } from '@libs/revision';
import type { GenerationRequest, GenerationResult, RevisionFeed, VlmEngine } from '@libs/vlm';
import { classifyEngineError, loadImage, REVISION_PROFILES, VLM_ENGINE, type RevisionProfiles } from '@libs/worker';
import { GENERATOR_CONFIG, type GeneratorConfig } from './config';
import { DETECTOR } from './detector.provider';

export interface GeneratedAnswer {
  answer: string;
  model: { name: string; fingerprint: string };
  revision: { profile: string; artifact_sha256: string | null } | null;
  ms: number;
  promptTokens: number;
  tokens: number;
  finishReason: string;
  /** The engine's batches this job's row was in (for the stage span). */
  batch?: { prefill: number; maxDecode: number };
  /** The hidden-state detector read on this row's prefill, for the evaluator; absent when the detector is off. */
  detector?: StageJob['detector'];
}

/** Answers one job with the VLM under its revision profile. */
@Injectable()
export class GenerationService {
  constructor(
    @Inject(VLM_ENGINE) private readonly engine: VlmEngine,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    @Inject(REVISION_PROFILES) private readonly profiles: RevisionProfiles,
    @Inject(GENERATOR_CONFIG) private readonly config: GeneratorConfig,
    @Inject(DETECTOR) private readonly detector: LoadedDetector | null,
  ) {}

  /** `group`: the engine row group (the tenant, TenantShare.groupOf), so a tenant's backlog cannot hold the batch. */
  async generate(job: StageJob, group?: string): Promise<GeneratedAnswer> {
    const image = await loadImage(this.blobs, job.imageSha256);
    const info = this.engine.info();
    const profile = this.profiles.resolve(job.profile, job.tenant);
    const started = Date.now();
    const result = await this.run(job, profile.feed, { image, maxNewTokens: this.config.maxNewTokens, group });
    return {
      answer: result.text,
      model: { name: info.name, fingerprint: info.fingerprint },
      revision: profile.name === 'none' ? null : { profile: profile.name, artifact_sha256: profile.artifactSha256 },
      ms: Date.now() - started,
      promptTokens: result.promptTokens,
      tokens: result.tokens.length,
      finishReason: result.finishReason,
      batch: result.batch,
      detector: this.detectorOf(result),
    };
  }

  /**
   * The detector alone, for a job whose answer was recorded by a run that died before enqueueing it: one prefill (and
   * one token) under the same profile reads the same taps, so the evaluator still gets the signal.
   */
  async detect(job: StageJob, group?: string): Promise<StageJob['detector']> {
    if (!this.detector) return undefined;
    const profile = this.profiles.resolve(job.profile, job.tenant);
    return this.detectorOf(await this.run(job, profile.feed, { image: await loadImage(this.blobs, job.imageSha256), maxNewTokens: 1, group }));
  }

  private async run(
    job: StageJob,
    revision: RevisionFeed | undefined,
    request: Pick<GenerationRequest, 'image' | 'maxNewTokens' | 'group'>,
  ): Promise<GenerationResult> {
    try {
      const [result] = await this.engine.generate([{ prompt: job.prompt, ...request, revision, ...(this.detector ? { probes: [this.detector.probe] } : {}) }]);
      return result;
    } catch (err) {
      throw classifyEngineError(err, 'generation_failed');
    }
  }

  private detectorOf(result: GenerationResult): StageJob['detector'] {
    if (!this.detector) return undefined;
    const z = result.probes?.[0];
    if (z === undefined || !Number.isFinite(z)) throw new ModerationError('generation_failed', 'the engine returned no value for the detector probe');
    return { hiddenRisk: detectorScore(z), tau: this.detector.tau, flags: this.config.detectorFlags };
  }
}
