import { z } from 'zod';

export const POLICIES = ['both', 'either', 'answer'] as const;
export const PolicySchema = z.enum(POLICIES);
export type Policy = z.infer<typeof PolicySchema>;

/** Moderation ids double as BullMQ job ids: no ':' and never all digits (BullMQ rejects both). */
export const ModerationIdSchema = z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{3,80}$/, 'ids start with a letter and use [A-Za-z0-9_-]');

export const Sha256Schema = z.string().regex(/^[0-9a-f]{64}$/);

/** What travels on every stage queue: references, never image bytes (BullMQ stores job data in plain text). */
export const StageJobSchema = z.object({
  id: ModerationIdSchema,
  tenant: z.string().min(1),
  imageSha256: Sha256Schema.optional(),
  prompt: z.string(),
  /** Set at intake for evaluate-only jobs; set by the generator otherwise. */
  answer: z.string().optional(),
  profile: z.string().min(1),
  policy: PolicySchema,
  batchId: ModerationIdSchema.optional(),
  /** How many stage runs came before this one (diagnostics; BullMQ keeps its own attempt counters). */
  attempt: z.number().int().nonnegative(),
});
export type StageJob = z.infer<typeof StageJobSchema>;
