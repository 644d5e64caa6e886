import { z } from 'zod';
import { ModerationIdSchema, PolicySchema } from './job';
import { ErrorCodeSchema, VerdictSchema, VerdictStatusSchema } from './verdict';

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
const ProfileSchema = z.string().min(1).max(100).describe('Revision profile name (one the server knows and allows for the tenant); `none` when absent');

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
    /** Revision profile name; `none` when absent. */
    profile: ProfileSchema.optional(),
    metadata: MetadataSchema.optional(),
    /** Base64 (optionally a data: URL) of a PNG, JPEG or WebP image; JSON submissions only. */
    image: z
      .string()
      .describe(
        'The image as base64 (standard or URL-safe alphabet, line breaks allowed) or as a data: URL (`data:image/png;base64,...`); PNG, JPEG or WebP, at most INTAKE_MAX_IMAGE_BYTES (default 8 MiB) decoded and INTAKE_MAX_IMAGE_PIXELS (default 25 megapixels); omit for a text-only job',
      )
      .optional(),
  })
  .describe('One job as JSON. Unknown fields are refused with 400 unknown_field.');
export type JobSubmission = z.infer<typeof JobSubmissionSchema>;

export const BatchSubmissionSchema = z
  .strictObject({
    items: z.array(JobSubmissionSchema).describe('The jobs, 1 to INTAKE_MAX_BATCH_ITEMS (default 500), verdicts listed in this order'),
    metadata: MetadataSchema.optional(),
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
  })
  .catchall(BinaryImage)
  .describe(
    "Many jobs as multipart/form-data: the `items` field and up to one file per item, each file in a field of its own name (named by an item's `file`, or paired in order). A text field other than items and metadata is refused with 400 unknown_field.",
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
