import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from './errors';
import { ModerationIdSchema, PolicySchema, Sha256Schema } from './job';

export const VerdictStatusSchema = z.enum(['queued', 'processing', 'succeeded', 'failed']);
export type VerdictStatus = z.infer<typeof VerdictStatusSchema>;
export const TERMINAL_STATUSES: ReadonlySet<VerdictStatus> = new Set(['succeeded', 'failed']);

export const DecisionSchema = z.enum(['pass', 'aligned', 'blocked']);
export type Decision = z.infer<typeof DecisionSchema>;

export const ErrorCodeSchema = z.enum(Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]]);

export const VerdictErrorSchema = z.object({
  code: ErrorCodeSchema,
  message: z.string(),
  retryable: z.boolean(),
  stage: z.enum(['generate', 'evaluate', 'align']).optional(),
});
export type VerdictError = z.infer<typeof VerdictErrorSchema>;

export const ScoresSchema = z
  .object({
    /** CLIP cosine between the image and the unsafe-content text (ETA pre-generation); null without an image. */
    image_risk: z.number().nullable(),
    /** Reward-model score of the answer under the safety input format (ETA post-generation); higher is safer. */
    answer_safety: z.number().nullable(),
  })
  .catchall(z.number().nullable());
export type Scores = z.infer<typeof ScoresSchema>;

export const ThresholdsSchema = z
  .object({ image_risk: z.number(), answer_safety: z.number() })
  .catchall(z.number());

/** Milliseconds; `<stage>_wait_ms` is the time the job sat in that queue (the hop latency), `<stage>_ms` the run. */
export const TimingsSchema = z.record(z.string(), z.number());

export const VerdictSchema = z.object({
  id: ModerationIdSchema,
  object: z.literal('moderation.verdict'),
  status: VerdictStatusSchema,
  decision: DecisionSchema.nullable(),
  flagged: z.boolean().nullable(),
  scores: ScoresSchema.nullable(),
  thresholds: ThresholdsSchema.nullable(),
  policy: PolicySchema,
  policy_version: z.string().nullable(),
  prompt: z.string(),
  final_answer: z.string().nullable(),
  /** The answer before alignment (generated, or supplied by the client). */
  original_answer: z.string().nullable(),
  revision: z.object({ profile: z.string(), artifact_sha256: Sha256Schema.nullable() }).nullable(),
  aligner: z
    .object({
      n: z.number().int(),
      /** Index of the chosen candidate at each sentence of the aligned answer. */
      chosen: z.array(z.number().int()),
      candidates_scored: z.number().int(),
    })
    .nullable(),
  model: z.object({ name: z.string(), fingerprint: z.string() }).nullable(),
  timings: TimingsSchema,
  /** Stage runs started, retries and stall recoveries included. */
  attempts: z.number().int().nonnegative(),
  error: VerdictErrorSchema.nullable(),
  created_at: z.string(),
  completed_at: z.string().nullable(),
  /** sha256 over the image bytes, the prompt and the supplied answer: lets clients de-duplicate. */
  input_sha256: Sha256Schema,
  image_sha256: Sha256Schema.nullable(),
  profile: z.string(),
  batch_id: ModerationIdSchema.nullable(),
  metadata: z.record(z.string(), z.unknown()).nullable(),
});
export type Verdict = z.infer<typeof VerdictSchema>;
