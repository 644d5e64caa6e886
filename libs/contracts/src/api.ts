import { z } from 'zod';
import { ModerationIdSchema, PolicySchema } from './job';
import { VerdictSchema, VerdictStatusSchema } from './verdict';

/**
 * Request bodies as the API parses them. Limits (lengths, sizes) are checked by the intake service against
 * the configured Limits, so each violation gets its own error code rather than a generic schema error.
 */
export const JobSubmissionSchema = z.object({
  prompt: z.string(),
  /** Moderate an existing answer: generation is skipped. */
  answer: z.string().optional(),
  /** Revision profile name; `none` when absent. */
  profile: z.string().min(1).max(100).optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
  /** Base64 (optionally a data: URL) of a PNG, JPEG or WebP image; JSON submissions only. */
  image: z.string().optional(),
});
export type JobSubmission = z.infer<typeof JobSubmissionSchema>;

export const BatchSubmissionSchema = z.object({
  items: z.array(JobSubmissionSchema),
  metadata: z.record(z.string(), z.unknown()).optional(),
});
export type BatchSubmission = z.infer<typeof BatchSubmissionSchema>;

export const JobAcceptedSchema = z.object({
  id: ModerationIdSchema,
  status: VerdictStatusSchema,
  poll_url: z.string(),
  /** False when an Idempotency-Key matched an earlier identical request. */
  created: z.boolean(),
});
export type JobAccepted = z.infer<typeof JobAcceptedSchema>;

export const BatchAcceptedSchema = z.object({
  id: ModerationIdSchema,
  items: z.number().int(),
  job_ids: z.array(ModerationIdSchema),
  poll_url: z.string(),
  verdicts_url: z.string(),
  created: z.boolean(),
});
export type BatchAccepted = z.infer<typeof BatchAcceptedSchema>;

export const BatchStatusSchema = z.object({
  id: ModerationIdSchema,
  object: z.literal('moderation.batch'),
  total: z.number().int(),
  counts: z.object({
    queued: z.number().int(),
    processing: z.number().int(),
    succeeded: z.number().int(),
    failed: z.number().int(),
  }),
  done: z.boolean(),
  created_at: z.string(),
  metadata: z.record(z.string(), z.unknown()).nullable(),
});
export type BatchStatus = z.infer<typeof BatchStatusSchema>;

export const VerdictPageSchema = z.object({
  data: z.array(VerdictSchema),
  /** Pass as `?cursor=` for the next page; null on the last page. */
  next_cursor: z.string().nullable(),
});
export type VerdictPage = z.infer<typeof VerdictPageSchema>;

export const ApiErrorSchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});

export { PolicySchema };
