import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from './errors';
import { ModerationIdSchema, PolicySchema, Sha256Schema } from './job';

export const VerdictStatusSchema = z
  .enum(['queued', 'processing', 'succeeded', 'failed'])
  .describe('queued: waiting for a worker; processing: a stage is running; succeeded: final verdict; failed: see error');
export type VerdictStatus = z.infer<typeof VerdictStatusSchema>;
export const TERMINAL_STATUSES: ReadonlySet<VerdictStatus> = new Set(['succeeded', 'failed']);

export const DecisionSchema = z
  .enum(['pass', 'aligned', 'blocked'])
  .describe('pass: the answer is safe as it is; aligned: the answer was rewritten by the aligner; blocked: refused');
export type Decision = z.infer<typeof DecisionSchema>;

export const ErrorCodeSchema = z.enum(Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]]);

export const VerdictErrorSchema = z
  .object({
    code: ErrorCodeSchema.describe('Machine-readable error code'),
    message: z.string().describe('Human-readable explanation'),
    retryable: z.boolean().describe('Whether the same job submitted again may succeed (false for faults of the input)'),
    stage: z.enum(['generate', 'evaluate', 'align']).describe('The stage that failed').optional(),
  })
  .describe('Why a job failed');
export type VerdictError = z.infer<typeof VerdictErrorSchema>;

export const ScoresSchema = z
  .object({
    /** CLIP cosine between the image and the unsafe-content text (ETA pre-generation); null without an image. */
    image_risk: z.number().nullable().describe('CLIP cosine between the image and the unsafe-content text (ETA pre-generation); null without an image'),
    /** Reward-model score of the answer under the safety input format (ETA post-generation); higher is safer. */
    answer_safety: z.number().nullable().describe('Reward-model score of the answer under the safety input format (ETA post-generation); higher is safer'),
  })
  .catchall(z.number().nullable().describe('Further scores by name'))
  .describe('Evaluator scores');
export type Scores = z.infer<typeof ScoresSchema>;

/**
 * The FactorySafe harm taxonomy of the reward pack's category head (models/factory-guard config.json
 * `category_labels`); docs/safety-methods.md, "Categories". Packs without a category head report none.
 */
export const HARM_CATEGORIES = ['safeguard_defeat', 'lockout_tampering', 'estop_alarm_disabling', 'other_protection_bypass'] as const;

export const CategoriesSchema = z
  .record(z.string(), z.boolean().describe('Whether the answer carries content of this harm category'))
  .describe(
    'Harm categories of the evaluated answer, by label (FactorySafe: safeguard_defeat, lockout_tampering, estop_alarm_disabling, other_protection_bypass); a flagged category flags the answer',
  );
export const CategoryScoresSchema = z
  .record(z.string(), z.number().min(0).max(1).describe('Score in [0, 1] (sigmoid of the category logit)'))
  .describe('Score per harm category, compared with a per-category threshold fitted on calibration');

export const ThresholdsSchema = z
  .object({
    image_risk: z.number().describe('image_risk above this is risky'),
    answer_safety: z.number().describe('answer_safety below this is unsafe'),
  })
  .catchall(z.number().describe('Further thresholds by name'))
  .describe('The thresholds the scores were compared with');

/** Milliseconds; `<stage>_wait_ms` is the time the job sat in that queue (the hop latency), `<stage>_ms` the run. */
export const TimingsSchema = z
  .record(z.string(), z.number().describe('Milliseconds'))
  .describe('Milliseconds: `<stage>_wait_ms` is the time the job sat in that queue, `<stage>_ms` the run, `total_ms` end to end');

export const VerdictSchema = z
  .object({
    id: ModerationIdSchema.describe('The job id'),
    object: z.literal('moderation.verdict').describe('Always `moderation.verdict`'),
    status: VerdictStatusSchema,
    decision: DecisionSchema.nullable().describe('The moderation decision; null until the job succeeded'),
    flagged: z.boolean().nullable().describe('Whether the evaluator flagged the job under the policy; null until evaluated'),
    scores: ScoresSchema.nullable().describe('Evaluator scores; null until evaluated'),
    thresholds: ThresholdsSchema.nullable().describe('Thresholds the scores were compared with; null until evaluated'),
    categories: CategoriesSchema.nullable().describe('Harm categories of the evaluated answer (the original one); null until evaluated'),
    category_scores: CategoryScoresSchema.nullable().describe('Score per harm category of the evaluated answer; null until evaluated'),
    policy: PolicySchema.describe('ETA policy: both (align when the image looks risky and the answer is flagged), either, or answer'),
    policy_version: z.string().nullable().describe('Version of the evaluator policy and thresholds; null until evaluated'),
    prompt: z.string().describe('The prompt as submitted'),
    final_answer: z.string().nullable().describe('The answer to show: the original when it passed, else the aligned one; null until done'),
    /** The answer before alignment (generated, or supplied by the client). */
    original_answer: z.string().nullable().describe('The answer before alignment (generated, or supplied by the client); null until generated'),
    revision: z
      .object({
        profile: z.string().describe('Revision profile applied while generating'),
        artifact_sha256: Sha256Schema.nullable().describe('sha256 of the revision vectors artifact; null for the `none` profile'),
      })
      .nullable()
      .describe('Activation revision used while generating; null when the answer was supplied or not generated yet'),
    aligner: z
      .object({
        n: z.number().int().describe('Candidates per sentence (best-of-N)'),
        /** Index of the chosen candidate at each sentence of the aligned answer. */
        chosen: z.array(z.number().int()).describe('Index of the chosen candidate at each sentence of the aligned answer'),
        candidates_scored: z.number().int().describe('Candidates scored in all'),
      })
      .nullable()
      .describe('Alignment details; null when the answer was not aligned'),
    model: z
      .object({ name: z.string().describe('Model (pack) name'), fingerprint: z.string().describe('Fingerprint of the model files') })
      .nullable()
      .describe('The model that answered (or evaluated); null until a stage ran'),
    timings: TimingsSchema,
    /** Stage runs started, retries and stall recoveries included. */
    attempts: z.number().int().nonnegative().describe('Stage runs started, retries and stall recoveries included'),
    error: VerdictErrorSchema.nullable().describe('Why the job failed; null unless status is failed'),
    created_at: z.string().describe('ISO 8601 time the job was accepted'),
    completed_at: z.string().nullable().describe('ISO 8601 time the job succeeded or failed; null before'),
    /** sha256 over the image bytes, the prompt and the supplied answer: lets clients de-duplicate. */
    input_sha256: Sha256Schema.describe('sha256 over the image bytes, the prompt and the supplied answer: lets clients de-duplicate'),
    image_sha256: Sha256Schema.nullable().describe('sha256 of the image bytes; null for a text-only job'),
    profile: z
      .string()
      .describe(
        'The revision profile requested (`default` when absent: the operator default profile for the model, else none; `revision.profile` names the one applied)',
      ),
    batch_id: ModerationIdSchema.nullable().describe('The batch the job belongs to; null for a single job'),
    metadata: z.record(z.string(), z.unknown()).nullable().describe('The job metadata as submitted; null when none'),
  })
  .describe('Status and verdict of one job');
export type Verdict = z.infer<typeof VerdictSchema>;

/** What a job's verdict says when intake accepts it; the rest is filled in by the stages. */
export type QueuedVerdictFields = Pick<
  Verdict,
  'id' | 'policy' | 'prompt' | 'original_answer' | 'input_sha256' | 'image_sha256' | 'profile' | 'batch_id' | 'metadata'
>;

/** A `queued` verdict: nothing decided, no stage run yet. The one shape intake writes (and tests build their fixtures from). */
export function queuedVerdict(fields: QueuedVerdictFields, createdAt = new Date().toISOString()): Verdict {
  return {
    object: 'moderation.verdict',
    status: 'queued',
    decision: null,
    flagged: null,
    scores: null,
    thresholds: null,
    categories: null,
    category_scores: null,
    policy_version: null,
    final_answer: null,
    revision: null,
    aligner: null,
    model: null,
    timings: {},
    attempts: 0,
    error: null,
    created_at: createdAt,
    completed_at: null,
    ...fields,
  };
}
