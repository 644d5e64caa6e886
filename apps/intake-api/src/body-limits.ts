import type { Limits } from '@libs/contracts';

/**
 * Bytes one character of a prompt or answer may take in a JSON body: serializers that escape everything outside
 * ASCII (Python's json.dumps by default) write an astral code point as two `\uXXXX` escapes.
 */
const JSON_BYTES_PER_CHAR = 12;
/** Raw UTF-8 in a multipart field. */
const UTF8_BYTES_PER_CHAR = 4;
/** Metadata is measured as compact JSON; escaping and pretty-printing may take a few times that on the wire. */
const METADATA_SLACK = 6;
/** Keys, punctuation, the profile name, a data: URL prefix. */
const ITEM_OVERHEAD = 1024;

export interface IntakeBodyLimits {
  /** Whole body of POST /v1/jobs (JSON with a base64 image, or multipart). */
  job: number;
  /** Whole body of POST /v1/batches. */
  batch: number;
  /** One multipart text field of a job (prompt, answer, metadata). */
  jobField: number;
  /** One multipart text field of a batch (the `items` JSON array, metadata). */
  batchField: number;
}

/**
 * Body limits that follow from the item limits (items x (prompt + answer + base64 image + metadata)), each capped by
 * `maxRequestBytes`, so that no body can be larger than the largest acceptable request and a long prompt is refused
 * by its size before any per-character work.
 */
export function intakeBodyLimits(limits: Limits): IntakeBodyLimits {
  const cap = (n: number) => Math.min(limits.maxRequestBytes, Math.ceil(n));
  const text = JSON_BYTES_PER_CHAR * (limits.maxPromptChars + limits.maxAnswerChars);
  const metadata = METADATA_SLACK * limits.maxMetadataBytes;
  // Base64 of the image, with 5% for line breaks (MIME wraps at 76).
  const image = Math.ceil(limits.maxImageBytes / 3) * 4 * 1.05;
  const item = text + metadata + image + ITEM_OVERHEAD;
  const itemText = text + metadata + ITEM_OVERHEAD;
  return {
    job: cap(item),
    batch: cap(limits.maxBatchItems * item + metadata + ITEM_OVERHEAD),
    jobField: cap(UTF8_BYTES_PER_CHAR * Math.max(limits.maxPromptChars, limits.maxAnswerChars) + metadata + ITEM_OVERHEAD),
    batchField: cap(limits.maxBatchItems * itemText + metadata + ITEM_OVERHEAD),
  };
}
