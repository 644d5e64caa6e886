import { ModerationError } from '@libs/contracts';
import type { BlobStore } from '@libs/storage';

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
