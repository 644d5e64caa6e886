import { ModerationError } from '@libs/contracts';
import type { ModelInfo, RevisionFeed } from '@libs/vlm';

export const REVISION_PROFILES = Symbol('REVISION_PROFILES');

export interface ResolvedProfile {
  name: string;
  /** sha256 of the registered revision artifact; null for `none`. */
  artifactSha256: string | null;
  feed?: RevisionFeed;
}

/**
 * Names -> revision feeds for the loaded model. The registry of checksummed artifacts comes with the
 * safety-methods work; it binds here. Only registered profiles are ever applied: steering is also an attack tool.
 */
export interface RevisionProfiles {
  names(): string[];
  /** Throws ModerationError('unknown_profile') for names it does not know. */
  resolve(name: string, model: ModelInfo): ResolvedProfile;
}

/** The registry before any artifact is registered: `none` only. */
export class BuiltinRevisionProfiles implements RevisionProfiles {
  names(): string[] {
    return ['none'];
  }
  resolve(name: string): ResolvedProfile {
    if (name === 'none') return { name, artifactSha256: null };
    throw new ModerationError('unknown_profile', `unknown revision profile "${name}"`);
  }
}
