/**
 * Failure codes travel as typed errors: a StageFailure carries its code as a property through a real BullMQ
 * worker on a real Redis, and nothing reads a code back out of a message.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { ModerationError } from '@libs/contracts';
import { DEFAULT_REDIS_URL, isFinalFailure, redisOptions, StageFailure, toWorkerError, verdictErrorOf } from '@libs/queue';

const REDIS_URL = process.env.REDIS_URL || DEFAULT_REDIS_URL;
const PREFIX = `{failtest${randomBytes(4).toString('hex')}}`;

describe('stage failures are typed', () => {
  afterAll(async () => {
    const redis = new Redis(redisOptions(REDIS_URL));
    const keys = await redis.keys(`${PREFIX}*`);
    if (keys.length) await redis.del(...keys);
    redis.quit();
  });

  it('bad data becomes a StageFailure: unrecoverable for BullMQ, code and details as properties, message untouched', () => {
    const err = toWorkerError(new ModerationError('image_undecodable', 'vipspng: libpng read error', { sha: 'ab' }));
    expect(err).toBeInstanceOf(StageFailure);
    expect(err).toBeInstanceOf(UnrecoverableError);
    // BullMQ also goes by the name (Job.moveToFailed), so it stays UnrecoverableError's.
    expect(err.name).toBe('UnrecoverableError');
    expect(err).toMatchObject({ code: 'image_undecodable', details: { sha: 'ab' }, message: 'vipspng: libpng read error' });
    expect(verdictErrorOf('generate', err, 'generation_failed')).toEqual({
      code: 'image_undecodable',
      message: 'vipspng: libpng read error',
      retryable: false,
      stage: 'generate',
    });
  });

  it('a message that looks like "word: text" is not taken for a code', () => {
    // A transient fault whose text happens to start like a code: neither the code nor the message is rewritten.
    expect(verdictErrorOf('generate', new Error('blob_missing: socket closed'), 'generation_failed')).toEqual({
      code: 'attempts_exhausted',
      message: 'blob_missing: socket closed',
      retryable: false,
      stage: 'generate',
    });
    expect(verdictErrorOf('generate', new Error('vipspng: libpng read error'), 'generation_failed').message).toBe('vipspng: libpng read error');
    // An unrecoverable error without a code gets the stage's fallback.
    expect(verdictErrorOf('align', new UnrecoverableError('image_undecodable: nope'), 'alignment_failed').code).toBe('alignment_failed');
  });

  it('round trip through a real BullMQ worker: one attempt of three, the failed event sees the code', async () => {
    const connection = redisOptions(REDIS_URL);
    const queue = new Queue('generate', { connection, prefix: PREFIX });
    const worker = new Worker(
      'generate',
      async () => {
        throw toWorkerError(new ModerationError('image_undecodable', 'image could not be decoded: VipsJpeg: premature end of JPEG image'));
      },
      { connection, prefix: PREFIX },
    );
    try {
      const failed = once(worker, 'failed') as Promise<[Job, Error]>;
      await queue.add('generate', { id: 'j1' }, { jobId: 'j1', attempts: 3, backoff: { type: 'fixed', delay: 10 } });
      const [job, err] = await failed;
      expect(err).toBeInstanceOf(StageFailure);
      expect((err as StageFailure).code).toBe('image_undecodable');
      expect(isFinalFailure(job, err)).toBe(true);
      expect(verdictErrorOf('generate', err, 'generation_failed').code).toBe('image_undecodable');
      const stored = (await queue.getJob('j1'))!;
      expect(await stored.getState()).toBe('failed');
      expect(stored.attemptsMade).toBe(1);
      // What BullMQ keeps in Redis is the plain message: no code prefix for anyone to parse.
      expect(stored.failedReason).toBe('image could not be decoded: VipsJpeg: premature end of JPEG image');
    } finally {
      await worker.close();
      await queue.close();
    }
  });
});
