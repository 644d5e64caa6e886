import { UnrecoverableError, type Job } from 'bullmq';
import { ERROR_CODES, ModerationError, type ErrorCode, type VerdictError, type Stage } from '@libs/contracts';

/** Bad data becomes UnrecoverableError so BullMQ skips the retries; the code survives in the message prefix. */
export function toWorkerError(err: unknown): Error {
  if (err instanceof ModerationError && !err.retryable) return new UnrecoverableError(`${err.code}: ${err.message}`);
  return err instanceof Error ? err : new Error(String(err));
}

/** True when BullMQ will not run this job again: unrecoverable, or its attempts are used up. */
export function isFinalFailure(job: Job | undefined, err: Error): boolean {
  if (!job) return false;
  if (err instanceof UnrecoverableError || err.name === 'UnrecoverableError') return true;
  // A job that stalled more than maxStalledCount times: BullMQ 6 defers its failure to the next worker that takes
  // it, which fails it with this message, attempts left or not.
  if (/stalled more than allowable limit/.test(err.message)) return true;
  const attempts = job.opts.attempts ?? 1;
  return job.attemptsMade >= attempts;
}

const CODE_PREFIX = /^([a-z_]+): /;

/** The verdict's error for a job BullMQ gave up on. */
export function verdictErrorOf(stage: Stage, err: Error, fallback: ErrorCode): VerdictError {
  const match = CODE_PREFIX.exec(err.message);
  const code = (match?.[1] ?? (err instanceof ModerationError ? err.code : undefined)) as ErrorCode | undefined;
  const unrecoverable = err instanceof UnrecoverableError || err.name === 'UnrecoverableError';
  const known = code && code in ERROR_CODES ? code : undefined;
  return {
    code: known ?? (unrecoverable ? fallback : 'attempts_exhausted'),
    message: match ? err.message.slice(match[0].length) : err.message,
    retryable: false,
    stage,
  };
}
