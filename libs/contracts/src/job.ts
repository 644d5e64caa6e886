import { z } from 'zod';

export const POLICIES = ['both', 'either', 'answer'] as const;
export const PolicySchema = z.enum(POLICIES);
export type Policy = z.infer<typeof PolicySchema>;

/**
 * The policy intake stamps on a job unless ETA_POLICY says otherwise. Not the reference's 'both': on FactorySafe's
 * calibration split 'both' lets every harmful request about a harmless-looking photo through (the image score
 * is low, so nothing is aligned), while 'answer' aligns whatever the answer's score flags at no over-refusal cost
 * (docs/benchmarks/factorysafe.md, "Policy selection on calibration"; issue 12 item 7).
 */
export const DEFAULT_POLICY: Policy = 'answer';

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
  /**
   * The generator's hidden-state detector on this job's prefill (DETECTOR_FILE): hidden_risk = sigmoid of the probe,
   * the artifact's threshold, and whether it flags the job (ETA_DETECTOR_FLAGS). Absent when no detector ran.
   */
  detector: z.object({ hiddenRisk: z.number().min(0).max(1), tau: z.number().min(0).max(1), flags: z.boolean() }).optional(),
  /** How many stage runs came before this one (diagnostics; BullMQ keeps its own attempt counters). */
  attempt: z.number().int().nonnegative(),
  /**
   * W3C trace context of the span that enqueued this job (the intake's HTTP span, then each stage's span), so one
   * job is one trace across the queues; absent when tracing is off. Never trusted for anything but tracing.
   */
  traceparent: z
    .string()
    .regex(/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/)
    .optional(),
  tracestate: z.string().max(512).optional(),
});
export type StageJob = z.infer<typeof StageJobSchema>;
