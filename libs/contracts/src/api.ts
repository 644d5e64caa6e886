import { z } from 'zod';
import { ModerationIdSchema, PolicySchema } from './job';
import { DecisionSchema, ErrorCodeSchema, VerdictSchema, VerdictStatusSchema } from './verdict';

const MetadataSchema = z
  .record(z.string(), z.unknown())
  .describe(
    'Client data kept with the job and returned in its verdict: a JSON object, at most INTAKE_MAX_METADATA_BYTES (default 4096) bytes as compact JSON, nested at most INTAKE_MAX_JSON_DEPTH (default 32) levels',
  );

const PromptSchema = z
  .string()
  .describe('The question about the image (or the text request), 1 to INTAKE_MAX_PROMPT_CHARS (default 4000) characters, with at least one visible character');
const AnswerSchema = z
  .string()
  .describe(
    'An existing answer to moderate: generation is skipped and the answer is evaluated (and aligned if flagged); at most INTAKE_MAX_ANSWER_CHARS (default 16000) characters',
  );
const ProfileSchema = z
  .string()
  .min(1)
  .max(100)
  .describe(
    'Revision profile name (one the server knows and allows for the tenant); `default` when absent (the operator default for the worker model, else none); `none` asks for no revision',
  );

const CallbackUrlSchema = z
  .string()
  .max(2048)
  .describe(
    "An https URL this submission's webhook events (verdict.completed, verdict.failed; batch.completed for a batch) are also POSTed to, signed with the secret of the tenant's registered endpoint of the same origin (scheme, host and port); another origin is refused with 422 callback_not_registered, a malformed URL with 400 invalid_webhook_url",
  );

/**
 * Request bodies as the API parses them. Limits (lengths, sizes) are checked by the intake service against
 * the configured Limits, so each violation gets its own error code rather than a generic schema error. Bodies are
 * strict: a field not defined here is refused with `unknown_field`.
 */
export const JobSubmissionSchema = z
  .strictObject({
    prompt: PromptSchema,
    /** Moderate an existing answer: generation is skipped. */
    answer: AnswerSchema.optional(),
    /** Revision profile name; `default` when absent. */
    profile: ProfileSchema.optional(),
    metadata: MetadataSchema.optional(),
    /** Base64 (optionally a data: URL) of a PNG, JPEG or WebP image; JSON submissions only. */
    image: z
      .string()
      .describe(
        'The image as base64 (standard or URL-safe alphabet, line breaks allowed) or as a data: URL (`data:image/png;base64,...`); PNG, JPEG or WebP, at most INTAKE_MAX_IMAGE_BYTES (default 8 MiB) decoded and INTAKE_MAX_IMAGE_PIXELS (default 25 megapixels); omit for a text-only job',
      )
      .optional(),
    callback_url: CallbackUrlSchema.optional(),
  })
  .describe('One job as JSON. Unknown fields are refused with 400 unknown_field.');
export type JobSubmission = z.infer<typeof JobSubmissionSchema>;

/** One item of a JSON batch: a job without callback_url (a batch has one, for all its items). */
export const BatchItemSchema = JobSubmissionSchema.omit({ callback_url: true }).describe(
  "One item of a JSON batch: a job's fields but callback_url (the batch's applies to all its items). Unknown fields are refused with 400 unknown_field.",
);

export const BatchSubmissionSchema = z
  .strictObject({
    items: z.array(BatchItemSchema).describe('The jobs, 1 to INTAKE_MAX_BATCH_ITEMS (default 500), verdicts listed in this order'),
    metadata: MetadataSchema.optional(),
    callback_url: CallbackUrlSchema.optional(),
  })
  .describe('Many jobs as JSON (a bare array of items is taken too). Unknown fields are refused with 400 unknown_field.');
export type BatchSubmission = z.infer<typeof BatchSubmissionSchema>;

const BinaryImage = z
  .string()
  .meta({ format: 'binary' })
  .describe('A PNG, JPEG or WebP file, at most INTAKE_MAX_IMAGE_BYTES (default 8 MiB) and INTAKE_MAX_IMAGE_PIXELS (default 25 megapixels)');
const JsonMetadataField = z.string().describe(`${MetadataSchema.description}; sent as JSON text`);

/** One job as multipart/form-data. */
export const JobSubmissionFormSchema = z
  .strictObject({
    prompt: PromptSchema,
    answer: AnswerSchema.optional(),
    profile: ProfileSchema.optional(),
    metadata: JsonMetadataField.optional(),
    image: BinaryImage.optional(),
    callback_url: CallbackUrlSchema.optional(),
  })
  .describe(
    'One job as multipart/form-data: text fields and at most one file, in the field `image`. Other fields are refused with 400 unknown_field, a second file with 400 too_many_files.',
  );

/** One item of the multipart batch's `items` field. */
export const BatchFormItemSchema = z
  .strictObject({
    prompt: PromptSchema,
    answer: AnswerSchema.optional(),
    profile: ProfileSchema.optional(),
    metadata: MetadataSchema.optional(),
    file: z
      .string()
      .describe(
        "Name of the multipart file field that holds this item's image. When no item names a file, the files pair with the items in order (one file per item, or none)",
      )
      .optional(),
  })
  .describe('One item of a multipart batch (inside the JSON text of the `items` field). Unknown fields are refused with 400 unknown_field.');

export const BatchSubmissionFormSchema = z
  .object({
    items: z
      .string()
      .describe(
        'JSON text of an array of BatchFormItem (prompt, answer, profile, metadata, file), 1 to INTAKE_MAX_BATCH_ITEMS (default 500) items, e.g. `[{"prompt":"What is shown?","file":"photo1"}]`',
      ),
    metadata: JsonMetadataField.optional(),
    callback_url: CallbackUrlSchema.optional(),
  })
  .catchall(BinaryImage)
  .describe(
    "Many jobs as multipart/form-data: the `items` field and up to one file per item, each file in a field of its own name (named by an item's `file`, or paired in order). A text field other than items, metadata and callback_url is refused with 400 unknown_field.",
  );

export const JobAcceptedSchema = z
  .object({
    id: ModerationIdSchema.describe('The job id'),
    status: VerdictStatusSchema.describe('The job status at acceptance (`queued`; an idempotent replay gives the current status)'),
    poll_url: z.string().describe('Path to poll for the verdict: /v1/jobs/{id}'),
    /** False when an Idempotency-Key matched an earlier identical request. */
    created: z.boolean().describe('False when an Idempotency-Key matched an earlier identical request (nothing new was queued)'),
  })
  .describe('A job was accepted for moderation');
export type JobAccepted = z.infer<typeof JobAcceptedSchema>;

export const BatchAcceptedSchema = z
  .object({
    id: ModerationIdSchema.describe('The batch id'),
    items: z.number().int().describe('Number of jobs in the batch'),
    job_ids: z.array(ModerationIdSchema).describe('The job ids, in submission order'),
    poll_url: z.string().describe('Path of the batch status: /v1/batches/{id}'),
    verdicts_url: z.string().describe('Path of the batch verdicts: /v1/batches/{id}/verdicts'),
    created: z.boolean().describe('False when an Idempotency-Key matched an earlier identical request (nothing new was queued)'),
  })
  .describe('A batch was accepted for moderation');
export type BatchAccepted = z.infer<typeof BatchAcceptedSchema>;

const count = (what: string) => z.number().int().describe(`Jobs ${what}`);
export const BatchStatusSchema = z
  .object({
    id: ModerationIdSchema.describe('The batch id'),
    object: z.literal('moderation.batch').describe('Always `moderation.batch`'),
    total: z.number().int().describe('Number of jobs in the batch'),
    counts: z
      .object({
        queued: count('waiting in a queue'),
        processing: count('being worked on'),
        succeeded: count('with a final verdict'),
        failed: count("that failed (see each verdict's error)"),
      })
      .describe('Jobs of the batch by status'),
    done: z.boolean().describe('True when every job succeeded or failed'),
    created_at: z.string().describe('ISO 8601 time the batch was accepted'),
    metadata: MetadataSchema.nullable().describe('The batch metadata as submitted; null when none'),
  })
  .describe('Counts of a batch by status');
export type BatchStatus = z.infer<typeof BatchStatusSchema>;

export const VerdictPageSchema = z
  .object({
    data: z.array(VerdictSchema).describe('Verdicts of the batch, in submission order'),
    /** Pass as `?cursor=` for the next page; null on the last page. */
    next_cursor: z.string().nullable().describe('Pass as `?cursor=` for the next page; null on the last page'),
  })
  .describe("One page of a batch's verdicts");
export type VerdictPage = z.infer<typeof VerdictPageSchema>;

export const ApiErrorSchema = z
  .object({
    error: z
      .object({
        code: ErrorCodeSchema.describe('Machine-readable error code; each code has one HTTP status'),
        message: z.string().describe('Human-readable explanation'),
        details: z
          .record(z.string(), z.unknown())
          .describe('Facts about the refusal, e.g. `limit` (the limit that was hit), `item` (index of the batch item), `field`, `retry_after_seconds`')
          .optional(),
      })
      .describe('What went wrong'),
  })
  .describe('Every error response: `{ error: { code, message, details? } }`');
export type ApiError = z.infer<typeof ApiErrorSchema>;

export { PolicySchema };

// Webhooks (issue 14): endpoint registration, the events POSTed to them and the admin dead-letter list.

export const WEBHOOK_EVENT_TYPES = ['verdict.completed', 'verdict.failed', 'batch.completed'] as const;
export const WebhookEventTypeSchema = z
  .enum(WEBHOOK_EVENT_TYPES)
  .describe('verdict.completed: a job succeeded; verdict.failed: a job failed; batch.completed: every job of a batch succeeded or failed');
export type WebhookEventType = z.infer<typeof WebhookEventTypeSchema>;

export const WebhookEventSchema = z
  .object({
    id: z
      .string()
      .describe(
        'The event id, also sent as the webhook-id header: the same for every delivery attempt and replay of this event, so receivers de-duplicate on it',
      ),
    type: WebhookEventTypeSchema,
    created_at: z.string().describe('ISO 8601 time the verdict (or the batch) became final'),
    data: z
      .object({
        id: z.string().describe('The job id (verdict events) or the batch id (batch.completed)'),
        tenant: z.string().describe('The tenant that submitted it'),
        batch_id: z.string().nullable().describe('The batch the job belongs to (the batch itself for batch.completed); null for a single job'),
        status: z.enum(['succeeded', 'failed', 'completed']).describe('succeeded or failed for a verdict, completed for a batch'),
        decision: DecisionSchema.nullable().describe('The moderation decision of a succeeded verdict; null otherwise').optional(),
        poll_url: z.string().describe('Path to GET for the full verdict (or batch status): the event carries no prompt or answer'),
      })
      .describe('What became final; fetch poll_url for the details'),
  })
  .describe(
    'The JSON body POSTed to webhook endpoints, signed per Standard Webhooks: headers webhook-id (the event id), webhook-timestamp (unix seconds) and webhook-signature (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>" keyed with the base64-decoded part of the secret after whsec_>`)',
  );
export type WebhookEvent = z.infer<typeof WebhookEventSchema>;

export const WebhookRegistrationSchema = z
  .strictObject({
    url: z
      .string()
      .max(2048)
      .describe(
        'An https URL without credentials, at most 2048 characters; a literal private, loopback or link-local address (or localhost) is refused with 422 webhook_target_forbidden unless the operator allows it (WEBHOOK_ALLOWED_TARGETS), and every name is checked again by DNS at delivery time',
      ),
    events: z.array(WebhookEventTypeSchema).min(1).describe('The event types to deliver; all three when absent').optional(),
  })
  .describe('A webhook endpoint to register. Unknown fields are refused with 400 unknown_field.');
export type WebhookRegistration = z.infer<typeof WebhookRegistrationSchema>;

export const WebhookEndpointSchema = z
  .object({
    id: z.string().describe('The endpoint id'),
    url: z.string().describe('Where events are POSTed'),
    events: z.array(WebhookEventTypeSchema).describe('The event types delivered to it'),
    created_at: z.string().nullable().describe('ISO 8601 time it was registered; null for an endpoint of the configuration file'),
    read_only: z.boolean().describe('True for an endpoint of the operator configuration file (WEBHOOK_CONFIG_FILE): it cannot be deleted through the API'),
  })
  .describe("One of the tenant's webhook endpoints (the secret is shown only once, when it is registered)");
export type WebhookEndpoint = z.infer<typeof WebhookEndpointSchema>;

export const WebhookCreatedSchema = WebhookEndpointSchema.extend({
  secret: z.string().describe('The signing secret, `whsec_` + base64 of 32 random bytes: shown this once, keep it to verify webhook-signature'),
}).describe('The registered endpoint and its signing secret');
export type WebhookCreated = z.infer<typeof WebhookCreatedSchema>;

export const WebhookListSchema = z
  .object({ data: z.array(WebhookEndpointSchema).describe("The tenant's endpoints") })
  .describe("The tenant's webhook endpoints");
export type WebhookList = z.infer<typeof WebhookListSchema>;

export const DeadLetterSchema = z
  .object({
    id: z.string().describe('The delivery id (pass it to the replay route)'),
    event_id: z.string().describe('The event id (webhook-id)'),
    event_type: WebhookEventTypeSchema,
    tenant: z.string().describe('The tenant the event belongs to'),
    url: z.string().describe('The target it was sent to'),
    attempts: z.number().int().describe('Attempts made'),
    last_error: z.string().nullable().describe('Why the last attempt failed'),
    failed_at: z.string().nullable().describe('ISO 8601 time of the last attempt'),
  })
  .describe('A delivery that gave up (its retries spanned WEBHOOK_GIVE_UP_SECONDS, or its target was refused)');
export type DeadLetter = z.infer<typeof DeadLetterSchema>;

export const DeadLetterPageSchema = z
  .object({
    data: z.array(DeadLetterSchema).describe('Deliveries that gave up, latest first'),
    next_cursor: z.string().nullable().describe('Pass as `?cursor=` for the next page; null on the last page'),
  })
  .describe('One page of dead-lettered webhook deliveries');
export type DeadLetterPage = z.infer<typeof DeadLetterPageSchema>;

export const ReplayAcceptedSchema = z
  .object({
    id: z.string().describe('The delivery id'),
    status: z.literal('queued').describe('Always `queued`: the delivery runs again, with a fresh retry schedule'),
  })
  .describe('A dead-lettered delivery was queued again');
export type ReplayAccepted = z.infer<typeof ReplayAcceptedSchema>;
