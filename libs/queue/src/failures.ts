import { UnrecoverableError, type Job } from 'bullmq';
import { ERROR_CODES, ModerationError, type ErrorCode, type VerdictError, type Stage } from '@libs/contracts';

/**
 * A stage's bad-data failure: an UnrecoverableError, so BullMQ skips the retries, that carries the error's code
 * and details as properties (the message is the original one, no code prefix to parse back). The name stays
 * 'UnrecoverableError' because BullMQ also recognizes unrecoverable errors by name (Job.moveToFailed).
 */
export class StageFailure extends UnrecoverableError {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'UnrecoverableError';
  }
}

/** Bad data becomes a StageFailure; anything else is thrown as it is, for BullMQ to retry. */
export function toWorkerError(err: unknown): Error {
  if (err instanceof ModerationError && !err.retryable) return new StageFailure(err.code, err.message, err.details);
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

/** The code an error carries as a property (StageFailure, ModerationError), if it is one the system knows. */
function codeOf(err: Error): ErrorCode | undefined {
  const code = err instanceof StageFailure || err instanceof ModerationError ? err.code : undefined;
  return code && code in ERROR_CODES ? code : undefined;
}

/** The verdict's error for a job BullMQ gave up on. */
export function verdictErrorOf(stage: Stage, err: Error, fallback: ErrorCode): VerdictError {
  const unrecoverable = err instanceof UnrecoverableError || err.name === 'UnrecoverableError';
  return {
    code: codeOf(err) ?? (unrecoverable ? fallback : 'attempts_exhausted'),
    message: err.message,
    retryable: false,
    stage,
  };
}
