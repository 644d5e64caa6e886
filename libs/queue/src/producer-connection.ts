import type { Redis, RedisOptions } from 'ioredis';
import { ModerationError } from '@libs/contracts';
import { readSetting } from '@libs/settings';
import { redisOptions, redisUrl } from './config';

/** Env variables of the producer (intake) connections. */
export const PRODUCER_ENV = {
  commandTimeoutMs: 'REDIS_COMMAND_TIMEOUT_MS',
} as const;

export const DEFAULT_REDIS_COMMAND_TIMEOUT_MS = 1000;

export function redisCommandTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  return readSetting<number>(env, PRODUCER_ENV.commandTimeoutMs) ?? DEFAULT_REDIS_COMMAND_TIMEOUT_MS;
}

/**
 * ioredis options for connections that answer an HTTP request (the intake's queues and its storage connection).
 * Workers need `maxRetriesPerRequest: null` (blocking commands that survive reconnects, see redisOptions); a
 * producer must instead fail fast and never run a command later than the request that sent it:
 * - `enableOfflineQueue: false`: a command sent while disconnected fails at once instead of waiting for a reconnect;
 * - `maxRetriesPerRequest: 0` and `autoResendUnfulfilledCommands: false`: a command in flight when the connection
 *   drops fails and is never re-sent on reconnect;
 * - `commandTimeout`: a command Redis does not answer (paused, overloaded) fails after REDIS_COMMAND_TIMEOUT_MS.
 * A command that timed out may still run when Redis wakes up; the intake's creation transaction carries a
 * deadline so it is a no-op then (see libs/storage admission).
 */
export function producerRedisOptions(url = redisUrl(), env: NodeJS.ProcessEnv = process.env, extra: RedisOptions = {}): RedisOptions {
  const commandTimeout = redisCommandTimeoutMs(env);
  return redisOptions(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout,
    connectTimeout: Math.max(commandTimeout, 1000),
    // Reconnect soon after Redis comes back; BullMQ's default waits at least a second between attempts.
    retryStrategy: (times: number) => Math.min(50 * times, 1000),
    ...extra,
  });
}

/** Redis refused a write because maxmemory is reached (also inside scripts and aborted transactions). */
export function isRedisOom(err: unknown): boolean {
  const e = err as { message?: unknown; previousErrors?: { message?: unknown }[] } | undefined;
  if (!e) return false;
  if (/\bOOM\b/.test(String(e.message ?? ''))) return true;
  return Array.isArray(e.previousErrors) && e.previousErrors.some((p) => /\bOOM\b/.test(String(p?.message ?? '')));
}

/** Redis could not be reached or did not answer in time. */
export function isRedisUnavailable(err: unknown): boolean {
  const message = String((err as { message?: unknown } | undefined)?.message ?? '');
  const name = String((err as { name?: unknown } | undefined)?.name ?? '');
  return (
    /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|Connection is closed|MaxRetriesPerRequest|Stream isn't writeable|Command timed out|Command aborted|LOADING|connect ETIMEDOUT/i.test(
      message,
    ) ||
    name === 'MaxRetriesPerRequestError' ||
    name === 'AbortError'
  );
}

/** Maps a Redis failure to the API's error (503 redis_full / redis_unavailable); anything else is returned as is. */
export function asRedisError(err: unknown): unknown {
  if (err instanceof ModerationError) return err;
  const mapped = isRedisOom(err)
    ? new ModerationError('redis_full', 'the queue store is full and refused the write; nothing was created; retry later')
    : isRedisUnavailable(err)
      ? new ModerationError('redis_unavailable', 'the queue store is unreachable or did not answer in time; retry later')
      : undefined;
  if (!mapped) return err;
  // The Redis error stays attached for the logs (the error filter logs 5xx stacks), not for the client.
  Object.defineProperty(mapped, 'cause', { value: err, enumerable: false });
  if (err instanceof Error) mapped.stack = `${mapped.stack}\nCaused by: ${err.stack ?? err.message}`;
  return mapped;
}

/** Rejects after `ms` (a Redis call that hangs beyond it is answered as unavailable). */
export function withTimeout<T>(promise: Promise<T>, ms: number, what = 'Redis'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Command timed out: ${what} did not answer within ${ms} ms`)), ms);
      timer.unref?.();
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Resolves when the connection is ready or after `timeoutMs`, whichever comes first: a role starts against a Redis
 * that is down (its commands then fail fast with redis_unavailable) instead of hanging at start-up.
 */
export function waitForRedisReady(redis: Pick<Redis, 'status' | 'once' | 'off'>, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((done) => {
    const timer = setTimeout(finish, timeoutMs);
    function finish() {
      clearTimeout(timer);
      redis.off('ready', finish);
      done();
    }
    redis.once('ready', finish);
  });
}
