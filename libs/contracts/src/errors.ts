/**
 * Every error the system reports, with the HTTP status the API answers with. Worker-side codes appear only in
 * failed verdicts; their status is what an API would answer if the same fault were met at the door.
 */
export const ERROR_CODES = {
  // Authentication and ownership.
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  // Request shape and limits.
  invalid_request: 400,
  /** A body field (JSON, a batch item, a multipart field) that the API does not define: bodies are strict. */
  unknown_field: 400,
  request_too_large: 413,
  /** The request's headers are over the HTTP server's limit (Node's --max-http-header-size). */
  headers_too_large: 431,
  /** The client did not send the whole request in time. */
  request_timeout: 408,
  unsupported_media_type: 415,
  prompt_empty: 400,
  prompt_too_long: 400,
  /** The prompt holds no visible character (only whitespace, zero-width or control characters). */
  prompt_invisible: 400,
  /** A text field holds a lone UTF-16 surrogate: it cannot be encoded as UTF-8. */
  text_invalid_unicode: 400,
  answer_too_long: 400,
  metadata_too_large: 400,
  /** Any JSON body (or metadata field) nested deeper than the limit. */
  json_too_deep: 400,
  /** An id in the path that does not have the form of a job or batch id. */
  invalid_id: 400,
  /** More files in a multipart request than the route takes (one for /v1/jobs, one per item for batches). */
  too_many_files: 400,
  image_missing: 400,
  image_too_large: 413,
  image_too_many_pixels: 413,
  /** Width/height (or height/width) over the limit: resizing the short edge to the model size would explode the long one. */
  image_aspect_ratio: 422,
  unsupported_image_format: 415,
  image_undecodable: 422,
  unknown_profile: 422,
  profile_not_allowed: 403,
  batch_empty: 400,
  batch_too_large: 413,
  idempotency_conflict: 409,
  /** A request with the same Idempotency-Key is still being processed; retry after Retry-After. */
  idempotency_in_progress: 409,
  backlog_full: 429,
  // Per-tenant limits (each configured per tenant; all answer Retry-After).
  /** The tenant sent more requests than its rate allows. */
  tenant_rate_limited: 429,
  /** The tenant's accepted items without a final verdict would exceed its in-flight limit. */
  tenant_in_flight_limit: 429,
  /** The tenant's share of the pipeline backlog would exceed its configured fraction of the backlog limit. */
  tenant_backlog_share: 429,
  // Webhooks.
  /** A webhook or callback URL that is not an absolute http(s) URL without credentials. */
  invalid_webhook_url: 400,
  /** The URL resolves to a private, loopback, link-local or otherwise non-public address the operator did not allow. */
  webhook_target_forbidden: 422,
  /** A callback_url whose origin is not one of the tenant's registered webhook endpoints. */
  callback_not_registered: 422,
  /** The tenant already has the most webhook endpoints allowed. */
  too_many_webhooks: 409,
  // Infrastructure.
  redis_unavailable: 503,
  /** Redis refused a write (maxmemory reached): nothing was created; retry later. */
  redis_full: 503,
  internal: 500,
  // Met by workers.
  blob_missing: 422,
  generation_failed: 500,
  evaluation_failed: 500,
  alignment_failed: 500,
  attempts_exhausted: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export function httpStatusOf(code: ErrorCode): number {
  return ERROR_CODES[code];
}

/** Faults of the input itself: retrying cannot help, so workers raise them as BullMQ UnrecoverableError. */
export const BAD_DATA_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'blob_missing',
  'image_undecodable',
  'unsupported_image_format',
  'image_too_many_pixels',
  'image_aspect_ratio',
  'unknown_profile',
  'profile_not_allowed',
  'prompt_empty',
  'invalid_request',
]);

/** An error that carries a machine-readable code; the API renders it as `{ error: { code, message, details? } }`. */
export class ModerationError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'ModerationError';
    this.status = httpStatusOf(code);
  }

  get retryable(): boolean {
    return !BAD_DATA_CODES.has(this.code);
  }
}
