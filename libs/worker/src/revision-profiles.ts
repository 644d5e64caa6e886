import type { Provider } from '@nestjs/common';
import { ModerationError } from '@libs/contracts';
import { RevisionProfileError, RevisionProfiles as ProfileRegistry } from '@libs/revision';
import type { RevisionFeed, VlmEngine } from '@libs/vlm';
import { VLM_ENGINE } from './vlm-engine.provider';

export const REVISION_PROFILES = Symbol('REVISION_PROFILES');

export interface ResolvedProfile {
  name: string;
  /** sha256 of the registered revision artifact; null for `none`. */
  artifactSha256: string | null;
  feed?: RevisionFeed;
}

/** What the generator and aligner need: a job's profile name and tenant -> the revision feed for the loaded model. */
export interface RevisionProfiles {
  names(): string[];
  /** Throws ModerationError('unknown_profile' | 'profile_not_allowed'). */
  resolve(name: string, tenant: string): ResolvedProfile;
}

/**
 * The registry of checksummed artifacts (@libs/revision), loaded when the worker starts and validated against
 * the loaded model's fingerprint: a tampered or mismatched artifact stops the worker, because steering vectors
 * are also an attack tool and only registered ones may ever be applied.
 */
export class RegisteredRevisionProfiles implements RevisionProfiles {
  constructor(private readonly registry: ProfileRegistry) {}

  names(): string[] {
    return this.registry.names();
  }

  resolve(name: string, tenant: string): ResolvedProfile {
    try {
      const r = this.registry.resolve(name, tenant);
      // The applied profile's name: `default` resolves to the model's default.
      return { name: r.profile.name, artifactSha256: r.artifactSha256, feed: r.feed };
    } catch (err) {
      if (err instanceof RevisionProfileError && (err.code === 'unknown_profile' || err.code === 'profile_not_allowed')) {
        throw new ModerationError(err.code, err.message);
      }
      throw err;
    }
  }
}

/** Profiles from REVISION_PROFILES (or config/profiles.json), checked against the engine this process loaded. */
export function revisionProfilesProvider(env: NodeJS.ProcessEnv): Provider {
  return {
    provide: REVISION_PROFILES,
    inject: [VLM_ENGINE],
    useFactory: (engine: VlmEngine): RevisionProfiles => new RegisteredRevisionProfiles(ProfileRegistry.fromEnv(engine.info(), env)),
  };
}
