import type { RedisOptions } from 'ioredis';
import type { DefaultJobOptions, WorkerOptions } from 'bullmq';
import { DEFAULT_QUEUE_PREFIX, type Stage } from '@libs/contracts';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** Every env variable the queue wiring reads; the manifest test checks deployments against this list. */
export const QUEUE_ENV = {
  redisUrl: 'REDIS_URL',
  prefix: 'QUEUE_PREFIX',
  attempts: 'JOB_ATTEMPTS',
  backoffMs: 'JOB_BACKOFF_MS',
  keepCompletedSeconds: 'JOB_KEEP_COMPLETED_SECONDS',
  keepFailedSeconds: 'JOB_KEEP_FAILED_SECONDS',
  lockDurationMs: 'WORKER_LOCK_DURATION_MS',
  stalledIntervalMs: 'WORKER_STALLED_INTERVAL_MS',
  maxStalledCount: 'WORKER_MAX_STALLED_COUNT',
  concurrency: 'WORKER_CONCURRENCY',
} as const;

function num(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new Error(`${name} must be a number, got "${raw}"`);
  return value;
}

export function redisUrl(env: NodeJS.ProcessEnv = process.env): string {
  return env[QUEUE_ENV.redisUrl] || DEFAULT_REDIS_URL;
}

export function queuePrefix(env: NodeJS.ProcessEnv = process.env): string {
  const prefix = env[QUEUE_ENV.prefix] || DEFAULT_QUEUE_PREFIX;
  // Without a hash tag a Redis Cluster spreads a stage's keys over slots and multi-key scripts fail (CROSSSLOT).
  if (!/\{[^}]+\}/.test(prefix)) throw new Error(`${QUEUE_ENV.prefix} must contain a hash tag such as {mod}, got "${prefix}"`);
  return prefix;
}

/** ioredis options from a redis:// or rediss:// URL (password, db and TLS included). */
export function redisOptions(url = redisUrl(), extra: RedisOptions = {}): RedisOptions {
  const u = new URL(url);
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : 0;
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db,
    tls: u.protocol === 'rediss:' ? {} : undefined,
    // BullMQ workers need blocking commands that survive reconnects.
    maxRetriesPerRequest: null,
    ...extra,
  };
}

/**
 * Default options per stage. Retries back off exponentially for transient faults (Redis blips, a GPU
 * out of memory); bad data is thrown as UnrecoverableError and skips them. Completed jobs are dropped
 * soon because the verdict store, not BullMQ, is the record; failed ones stay longer for the dashboard.
 */
export function stageJobOptions(stage: Stage, env: NodeJS.ProcessEnv = process.env): DefaultJobOptions {
  return {
    attempts: num(env, QUEUE_ENV.attempts, 3),
    backoff: { type: 'exponential', delay: num(env, QUEUE_ENV.backoffMs, stage === 'evaluate' ? 2000 : 5000), jitter: 0.2 },
    removeOnComplete: { age: num(env, QUEUE_ENV.keepCompletedSeconds, 3600), count: 10000 },
    removeOnFail: { age: num(env, QUEUE_ENV.keepFailedSeconds, 7 * 24 * 3600) },
  };
}

/** The longest a single stage run is expected to take; deployments size terminationGracePeriodSeconds on it. */
export const LONGEST_JOB_SECONDS: Readonly<Record<Stage, number>> = { generate: 600, evaluate: 120, align: 900 };

/**
 * Worker settings. The VLM runs in a worker thread, so the event loop renews locks while a GPU job runs;
 * lockDuration only has to ride out GC pauses and driver hiccups, and a short one lets a crashed pod's job
 * be picked up again within about a minute. maxStalledCount 2 tolerates a scale-in or eviction killing the
 * same job twice before it is failed.
 */
export function stageWorkerOptions(stage: Stage, env: NodeJS.ProcessEnv = process.env): Partial<WorkerOptions> {
  const gpu = stage !== 'evaluate';
  const stagePrefix = `${stage.toUpperCase()}_`;
  return {
    concurrency: num(env, stagePrefix + QUEUE_ENV.concurrency, num(env, QUEUE_ENV.concurrency, gpu ? 1 : 2)),
    lockDuration: num(env, QUEUE_ENV.lockDurationMs, gpu ? 120_000 : 60_000),
    stalledInterval: num(env, QUEUE_ENV.stalledIntervalMs, gpu ? 60_000 : 30_000),
    maxStalledCount: num(env, QUEUE_ENV.maxStalledCount, 2),
  };
}
