import { Inject, Injectable } from '@nestjs/common';
import { ModerationError, type StageJob } from '@libs/contracts';
import { BLOB_STORE, type BlobStore } from '@libs/storage';
import type { VlmEngine } from '@libs/vlm';
import { GENERATOR_CONFIG, type GeneratorConfig } from './config';
import { REVISION_PROFILES, type RevisionProfiles } from './revision-profiles';
import { VLM_ENGINE } from './vlm-engine.provider';

export interface GeneratedAnswer {
  answer: string;
  model: { name: string; fingerprint: string };
  revision: { profile: string; artifact_sha256: string | null } | null;
  ms: number;
  promptTokens: number;
  tokens: number;
  finishReason: string;
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
      [result] = await this.engine.generate([
        { prompt: job.prompt, image, maxNewTokens: this.config.maxNewTokens, revision: profile.feed },
      ]);
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
    };
  }
}

/** The job's image from the blob store; a missing blob is bad data (it will not appear on a retry). */
export async function loadImage(blobs: BlobStore, sha?: string): Promise<Uint8Array | undefined> {
  if (!sha) return undefined;
  const bytes = await blobs.get(sha);
  if (!bytes) throw new ModerationError('blob_missing', `image ${sha} is not in the blob store`);
  return bytes;
}

/**
 * Bad data arrives typed: the image decode (@libs/imaging) throws ModerationError('image_undecodable') on any
 * failure of sharp, and the engine thread hands ModerationErrors back as such. Anything else (out of memory, a
 * dead engine thread) is a fault that may pass on a retry.
 */
export function classifyEngineError(err: unknown, fallback: 'generation_failed' | 'alignment_failed' | 'evaluation_failed'): Error {
  if (err instanceof ModerationError) return err;
  return new ModerationError(fallback, err instanceof Error ? err.message : String(err));
}
