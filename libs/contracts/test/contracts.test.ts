import { describe, expect, it } from 'vitest';
import {
  BAD_DATA_CODES,
  DEFAULT_LIMITS,
  ERROR_CODES,
  limitsFromEnv,
  ModerationError,
  openApiComponentSchemas,
  StageJobSchema,
  VerdictSchema,
} from '@libs/contracts';

describe('contracts', () => {
  it('every error code has a 4xx/5xx status; bad-data codes are not retryable', () => {
    for (const [code, status] of Object.entries(ERROR_CODES)) expect(status, code).toBeGreaterThanOrEqual(400);
    expect(new ModerationError('blob_missing', 'x').retryable).toBe(false);
    expect(new ModerationError('generation_failed', 'x').retryable).toBe(true);
    for (const code of BAD_DATA_CODES) expect(ERROR_CODES[code]).toBeLessThan(500);
  });

  it('limits come from env, and bad values are refused', () => {
    expect(limitsFromEnv({})).toEqual(DEFAULT_LIMITS);
    expect(limitsFromEnv({ INTAKE_MAX_BATCH_ITEMS: '7', INTAKE_IMAGE_FORMATS: 'png, JPEG' })).toMatchObject({
      maxBatchItems: 7,
      imageFormats: ['png', 'jpeg'],
    });
    expect(() => limitsFromEnv({ INTAKE_MAX_IMAGE_BYTES: 'lots' })).toThrow();
    expect(() => limitsFromEnv({ INTAKE_IMAGE_FORMATS: 'gif' })).toThrow();
  });

  it('stage jobs carry references and ids BullMQ accepts', () => {
    const job = { id: 'mod_abc123', tenant: 't', prompt: 'p', profile: 'none', policy: 'both', attempt: 0 } as const;
    expect(StageJobSchema.parse(job)).toEqual(job);
    expect(() => StageJobSchema.parse({ ...job, id: '12345' })).toThrow();
    expect(() => StageJobSchema.parse({ ...job, id: 'mod:1' })).toThrow();
    expect(() => StageJobSchema.parse({ ...job, imageSha256: 'not-a-hash' })).toThrow();
  });

  it('the verdict schema accepts a finished verdict and extra score names', () => {
    const v = {
      id: 'mod_abc123',
      object: 'moderation.verdict',
      status: 'succeeded',
      decision: 'aligned',
      flagged: true,
      scores: { image_risk: 0.2, answer_safety: -1, aligned_answer_safety: 0.4 },
      thresholds: { image_risk: 0.16, answer_safety: 0.06 },
      categories: { safeguard_defeat: true, lockout_tampering: false },
      category_scores: { safeguard_defeat: 0.99, lockout_tampering: 0.01 },
      policy: 'both',
      policy_version: 'eta-x',
      prompt: 'p',
      final_answer: 'a',
      original_answer: 'o',
      revision: null,
      aligner: { n: 5, chosen: [1, 0], candidates_scored: 10 },
      model: { name: 'm', fingerprint: 'f' },
      timings: { generate_ms: 1 },
      attempts: 3,
      error: null,
      created_at: new Date().toISOString(),
      completed_at: new Date().toISOString(),
      input_sha256: 'a'.repeat(64),
      image_sha256: null,
      profile: 'none',
      batch_id: null,
      metadata: null,
    };
    expect(VerdictSchema.parse(v)).toEqual(v);
  });

  it('derives OpenAPI component schemas from the zod contracts', () => {
    const schemas = openApiComponentSchemas();
    expect(Object.keys(schemas)).toEqual(expect.arrayContaining(['Verdict', 'JobSubmission', 'BatchStatus', 'ApiError']));
    expect((schemas.Verdict.properties as Record<string, unknown>).status).toMatchObject({ enum: ['queued', 'processing', 'succeeded', 'failed'] });
  });
});
