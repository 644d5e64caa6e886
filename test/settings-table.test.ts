/**
 * The settings table (@libs/settings) against the code that reads it: every env name a lib or app declares is in the
 * table, and each plain default in the table is the one the reader falls back to.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, DEFAULT_QUEUE_PREFIX, LIMIT_ENV, type Limits } from '@libs/contracts';
import { DEFAULT_REDIS_COMMAND_TIMEOUT_MS, DEFAULT_REDIS_URL, PRODUCER_ENV, QUEUE_ENV } from '@libs/queue';
import { DEFAULT_TENANT_LIMITS, TENANT_LIMITS_ENV } from '@libs/queue';
import { PROFILES_ENV } from '@libs/revision';
import { ALIGNER_DEFAULTS, DEFAULT_CLIP_PACK_DIR, DEFAULT_REWARD_PACK_DIR, ETA_CONFIG_ENV, ETA_DEFAULTS, EVALUATOR_ENV } from '@libs/safety';
import { loadSettings, SETTINGS } from '@libs/settings';
import { BLOB_GC_ENV, DEFAULT_BLOB_DIR, DEFAULT_BLOB_GC_INTERVAL_SECONDS, DEFAULT_VERDICT_RETENTION_SECONDS, STORAGE_ENV } from '@libs/storage';
import { EXECUTION_ENV } from '@libs/vlm';
import { DEFAULT_VLM_PACK_DIR, DEFAULT_WORKER_HEALTH_PORT, VLM_ENV, WORKER_ENV } from '@libs/worker';
import { WEBHOOK_DEFAULTS, WEBHOOK_ENV } from '@libs/webhooks';
import { ALIGNER_ENV } from '../apps/aligner/src/config';
import { GENERATOR_ENV } from '../apps/generator/src/config';
import { DEFAULT_INTAKE_PORT, INTAKE_ENV } from '../apps/intake-api/src/config';

const names = new Set(SETTINGS.map((s) => s.name));

describe('settings table vs the code', () => {
  it('every env name the libs and apps declare is in the table', () => {
    const declared = [
      ...Object.values(QUEUE_ENV),
      ...Object.values(PRODUCER_ENV),
      ...Object.values(STORAGE_ENV),
      ...Object.values(BLOB_GC_ENV),
      ...Object.values(LIMIT_ENV),
      'INTAKE_IMAGE_FORMATS',
      ...Object.values(EVALUATOR_ENV),
      ...Object.values(EXECUTION_ENV),
      ...Object.values(VLM_ENV),
      ...Object.values(WORKER_ENV),
      ...Object.values(INTAKE_ENV),
      ...Object.values(GENERATOR_ENV),
      ...Object.values(ALIGNER_ENV),
      ...Object.values(TENANT_LIMITS_ENV),
      ...Object.values(WEBHOOK_ENV),
      PROFILES_ENV,
      ETA_CONFIG_ENV,
      ...['GENERATE', 'EVALUATE', 'ALIGN'].map((stage) => `${stage}_${QUEUE_ENV.concurrency}`),
    ];
    for (const name of declared) expect(names.has(name), name).toBe(true);
  });

  it("the table's defaults are the readers' fallbacks", () => {
    const all = loadSettings(undefined, {});
    const expected: Record<string, unknown> = {
      REDIS_URL: DEFAULT_REDIS_URL,
      QUEUE_PREFIX: DEFAULT_QUEUE_PREFIX,
      BLOB_DIR: DEFAULT_BLOB_DIR,
      VERDICT_RETENTION_SECONDS: DEFAULT_VERDICT_RETENTION_SECONDS,
      BLOB_GC_INTERVAL_SECONDS: DEFAULT_BLOB_GC_INTERVAL_SECONDS,
      REDIS_COMMAND_TIMEOUT_MS: DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
      HEALTH_PORT: DEFAULT_WORKER_HEALTH_PORT,
      PORT: DEFAULT_INTAKE_PORT,
      CLIP_PACK_DIR: DEFAULT_CLIP_PACK_DIR,
      REWARD_PACK_DIR: DEFAULT_REWARD_PACK_DIR,
      VLM_PACK_DIR: DEFAULT_VLM_PACK_DIR,
      ETA_POLICY: ETA_DEFAULTS.policy,
      ALIGNER_N: ALIGNER_DEFAULTS.n,
      ALIGNER_PREFIX: ALIGNER_DEFAULTS.prefix,
      ALIGNER_MAX_TOTAL_TOKENS: ALIGNER_DEFAULTS.maxTotalTokens,
      ALIGNER_TEMPERATURE: ALIGNER_DEFAULTS.temperature,
      ALIGNER_SEED: ALIGNER_DEFAULTS.seed,
      INTAKE_IMAGE_FORMATS: DEFAULT_LIMITS.imageFormats,
      ...Object.fromEntries(Object.entries(LIMIT_ENV).map(([key, name]) => [name, DEFAULT_LIMITS[key as keyof Limits]])),
      // TENANT_RATE_BURST has no plain default (one second of the rate): the other three are checked.
      TENANT_RATE_PER_SECOND: DEFAULT_TENANT_LIMITS.ratePerSecond,
      TENANT_MAX_IN_FLIGHT: DEFAULT_TENANT_LIMITS.maxInFlight,
      TENANT_MAX_BACKLOG_SHARE: DEFAULT_TENANT_LIMITS.maxBacklogShare,
      ...Object.fromEntries(Object.entries(WEBHOOK_DEFAULTS).map(([key, value]) => [WEBHOOK_ENV[key as keyof typeof WEBHOOK_DEFAULTS], value])),
    };
    for (const [name, value] of Object.entries(expected)) expect(all.get(name), name).toEqual(value);
  });
});
