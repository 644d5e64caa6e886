import { UnrecoverableError, type Job } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { ModerationError } from '@libs/contracts';
import {
  entryStage,
  isFinalFailure,
  kedaQueueKeys,
  nextStage,
  queuePrefix,
  redisOptions,
  stageJobOptions,
  stageWorkerOptions,
  toWorkerError,
  verdictErrorOf,
} from '@libs/queue';

describe('queue wiring', () => {
  it('reads the Redis URL, credentials, db and TLS', () => {
    expect(redisOptions('rediss://u:p%40ss@cache.example:6380/2')).toMatchObject({
      host: 'cache.example',
      port: 6380,
      username: 'u',
      password: 'p@ss',
      db: 2,
      tls: {},
      maxRetriesPerRequest: null,
    });
  });

  it('insists on a hash-tag prefix', () => {
    expect(queuePrefix({})).toBe('{mod}');
    expect(queuePrefix({ QUEUE_PREFIX: 'prod{mod}' })).toBe('prod{mod}');
    expect(() => queuePrefix({ QUEUE_PREFIX: 'mod' })).toThrow(/hash tag/);
  });

  it('stage options: exponential retries, retention, locks short enough to recover a killed worker within 30 s, env overrides', () => {
    expect(stageJobOptions('generate', {})).toMatchObject({ attempts: 3, backoff: { type: 'exponential' } });
    expect(stageWorkerOptions('generate', {})).toMatchObject({ concurrency: 1, lockDuration: 15_000, stalledInterval: 5_000, maxStalledCount: 2 });
    expect(stageWorkerOptions('evaluate', {}).concurrency).toBe(2);
    expect(stageWorkerOptions('generate', { WORKER_LOCK_DURATION_MS: '2000', GENERATE_WORKER_CONCURRENCY: '3' })).toMatchObject({
      lockDuration: 2000,
      concurrency: 3,
    });
    expect(() => stageWorkerOptions('align', { WORKER_STALLED_INTERVAL_MS: 'soon' })).toThrow();
  });

  it('routes generate -> evaluate -> align | finish; supplied answers start at evaluate', () => {
    expect(entryStage({})).toBe('generate');
    expect(entryStage({ answer: '' })).toBe('evaluate');
    expect(nextStage('generate')).toBe('evaluate');
    expect(nextStage('evaluate', { flagged: true })).toBe('align');
    expect(nextStage('evaluate', { flagged: false })).toBe('finish');
    expect(nextStage('align')).toBe('finish');
  });

  it('KEDA keys follow the BullMQ key layout', () => {
    expect(kedaQueueKeys('{mod}', 'align')).toEqual({ wait: '{mod}:align:wait', prioritized: '{mod}:align:prioritized', active: '{mod}:align:active' });
  });

  it('bad data skips retries; exhausted attempts and stall limits are final', () => {
    const bad = toWorkerError(new ModerationError('blob_missing', 'gone'));
    expect(bad).toBeInstanceOf(UnrecoverableError);
    expect(verdictErrorOf('generate', bad, 'generation_failed')).toEqual({ code: 'blob_missing', message: 'gone', retryable: false, stage: 'generate' });
    const transient = toWorkerError(new ModerationError('generation_failed', 'oom'));
    expect(transient).not.toBeInstanceOf(UnrecoverableError);
    const job = (attemptsMade: number) => ({ attemptsMade, opts: { attempts: 3 } }) as unknown as Job;
    expect(isFinalFailure(job(1), transient)).toBe(false);
    expect(isFinalFailure(job(3), transient)).toBe(true);
    expect(isFinalFailure(job(1), bad)).toBe(true);
    expect(isFinalFailure(job(0), new Error('job stalled more than allowable limit'))).toBe(true);
    expect(verdictErrorOf('evaluate', new Error('socket hang up'), 'evaluation_failed').code).toBe('attempts_exhausted');
  });
});
