import { Inject, Injectable } from '@nestjs/common';
import type { StageJob } from '@libs/contracts';
import { BLOB_STORE, type BlobStore } from '@libs/storage';
import type { VlmEngine } from '@libs/vlm';
import { classifyEngineError, loadImage, REVISION_PROFILES, VLM_ENGINE, type RevisionProfiles } from '@libs/worker';
import { GENERATOR_CONFIG, type GeneratorConfig } from './config';

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
}

/** Answers one job with the VLM under its revision profile. */
@Injectable()
export class GenerationService {
  constructor(
    @Inject(VLM_ENGINE) private readonly engine: VlmEngine,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    @Inject(REVISION_PROFILES) private readonly profiles: RevisionProfiles,
    @Inject(GENERATOR_CONFIG) private readonly config: GeneratorConfig,
  ) {}

  async generate(job: StageJob): Promise<GeneratedAnswer> {
    const image = await loadImage(this.blobs, job.imageSha256);
    const info = this.engine.info();
    const profile = this.profiles.resolve(job.profile, job.tenant);
    const started = Date.now();
    let result;
    try {
      [result] = await this.engine.generate([{ prompt: job.prompt, image, maxNewTokens: this.config.maxNewTokens, revision: profile.feed }]);
    } catch (err) {
      throw classifyEngineError(err, 'generation_failed');
    }
    return {
      answer: result.text,
      model: { name: info.name, fingerprint: info.fingerprint },
      revision: profile.name === 'none' ? null : { profile: profile.name, artifact_sha256: profile.artifactSha256 },
      ms: Date.now() - started,
      promptTokens: result.promptTokens,
      tokens: result.tokens.length,
      finishReason: result.finishReason,
      batch: result.batch,
    };
  }
}
