import type { RedisOptions } from 'ioredis';
import type { DefaultJobOptions, WorkerOptions } from 'bullmq';
import { DEFAULT_QUEUE_PREFIX, type Stage } from '@libs/contracts';
import { readSetting } from '@libs/settings';

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

/** A numeric setting through its schema in the settings table (@libs/settings); `fallback` when unset. */
function num(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  return readSetting<number>(env, name) ?? fallback;
}

export function redisUrl(env: NodeJS.ProcessEnv = process.env): string {
  return readSetting<string>(env, QUEUE_ENV.redisUrl) ?? DEFAULT_REDIS_URL;
}

export function queuePrefix(env: NodeJS.ProcessEnv = process.env): string {
  const prefix = readSetting<string>(env, QUEUE_ENV.prefix) ?? DEFAULT_QUEUE_PREFIX;
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
 * Worker settings, sized so that a SIGKILLed or lost worker's job is running again within 30 s, without false
 * stalls. BullMQ renews a running job's lock every lockRenewTime (we renew at a fifth of lockDuration, so the lock
 * outlives an event loop blocked for up to 4/5 of it); a job whose lock is gone when the stall checker passes
 * (every stalledInterval, in whichever worker gets there first) goes back to wait and an idle worker takes it at
 * once. So a kill is recovered within lockDuration + stalledInterval: 15 + 5 = 20 s for the GPU stages (a 12 s
 * blocked loop still keeps the lock).
 *
 * What blocks the event loop is what decides the lock. The VLM runs on a worker thread (libs/vlm's engine), so
 * a generation of any length renews its lock; what is left on the main thread is GC and, in the aligner, the
 * CLIP and reward scoring of each round's candidates (onnxruntime-node's `run` is synchronous native code on the
 * calling thread: milliseconds with the shipped packs and on a GPU). The evaluator runs CLIP and the reward model
 * on its main thread too, so one long synchronous `run` (a large reward model on CPU) stops lock renewal for its
 * whole length: its lock is 20 s (tolerates a 16 s blocking run; the shipped packs block for milliseconds) and a
 * kill is recovered within 20 + 5 = 25 s.
 * Raise WORKER_LOCK_DURATION_MS above 1.25x the longest single model call when packs are heavier than that.
 * maxStalledCount 2 tolerates a scale-in or eviction killing the same job twice before it is failed.
 */
export function stageWorkerOptions(stage: Stage, env: NodeJS.ProcessEnv = process.env): Partial<WorkerOptions> {
  const gpu = stage !== 'evaluate';
  const stagePrefix = `${stage.toUpperCase()}_`;
  const lockDuration = num(env, QUEUE_ENV.lockDurationMs, gpu ? 15_000 : 20_000);
  return {
    concurrency: num(env, stagePrefix + QUEUE_ENV.concurrency, num(env, QUEUE_ENV.concurrency, gpu ? 1 : 2)),
    lockDuration,
    lockRenewTime: Math.max(1, Math.floor(lockDuration / 5)),
    stalledInterval: num(env, QUEUE_ENV.stalledIntervalMs, 5_000),
    maxStalledCount: num(env, QUEUE_ENV.maxStalledCount, 2),
  };
}
