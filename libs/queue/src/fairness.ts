import { PRIORITY_LIMIT } from 'bullmq';
import type { Stage } from '@libs/contracts';
import { readSetting } from '@libs/settings';
import { fairKeys, stageQueueKeys } from './keys';

/** The env variables fair scheduling reads (rows of the settings table). */
export const FAIR_ENV = { enabled: 'FAIR_SCHEDULING', burstJobs: 'FAIR_BURST_JOBS', weights: 'FAIR_WEIGHTS' } as const;

/**
 * How far ahead of the others a tenant that was idle may go, in jobs per stage. Without a credit, a tenant arriving
 * at a busy stage would queue behind every job already there (FIFO again); with an unbounded one, a tenant that
 * submits in bursts would always cut in front. 32 is one generator batch (VLM_MAX_BATCH_SIZE): a newcomer's first
 * batch-full goes next, anything beyond alternates with the others by weight.
 */
export const DEFAULT_FAIR_BURST_JOBS = 32;

/**
 * Priorities are integers; a job of a weight-1 tenant costs this many priority steps, of weight w round(12 / w). 12
 * divides by 1, 2, 3, 4 and 6, so those weights (and 1.5, 0.5, ...) are exact; weights are held to 0.1..12.
 */
export const FAIR_COST_SCALE = 12;
export const FAIR_MIN_WEIGHT = 0.1;
export const FAIR_MAX_WEIGHT = 12;

/**
 * Once the head of a stage's queue has climbed past this priority (the stage has not been empty for about
 * REBASE_AT / 12 weight-1 jobs), the script shifts every waiting priority and tag down so the head is 1 again.
 */
export const FAIR_REBASE_AT = Math.floor(PRIORITY_LIMIT / 2);

export interface FairConfig {
  enabled: boolean;
  burstJobs: number;
  /** Tenant -> weight; a tenant not named has weight 1. */
  weights: Readonly<Record<string, number>>;
}

export function fairConfigFromEnv(env: NodeJS.ProcessEnv = process.env): FairConfig {
  return {
    enabled: readSetting<boolean>(env, FAIR_ENV.enabled) ?? true,
    burstJobs: readSetting<number>(env, FAIR_ENV.burstJobs) ?? DEFAULT_FAIR_BURST_JOBS,
    weights: readSetting<Record<string, number>>(env, FAIR_ENV.weights) ?? {},
  };
}

/**
 * Start-time fair queuing over BullMQ priorities (BullMQ 6, src/commands/includes/getPriorityScore.lua: a prioritized
 * job's score is priority * 2^32 + a counter, so the zset head is the lowest priority, FIFO among equals; the
 * worker's moveToActive takes the wait list first, then the zset head). Each stage keeps a hash of finish tags F_t.
 * For the jobs of tenant t entering a stage, V = the head's priority - 1 (the start tag served next): start
 * S = max(V - burst, F_t), job k gets priority S + k * cost + 1 and F_t becomes S + n * cost. A backlogged tenant
 * continues from its own tag, behind its earlier jobs; an idle one starts up to `burst` ahead of the head, so a
 * newcomer's first jobs go next and beyond that tenants alternate by weight: nobody waits behind another tenant's
 * whole backlog.
 *
 * When nothing waits in the zset, the hash is dropped (tags only compare jobs that wait together; the wait list holds
 * only priority-0 jobs, served before any tag) and V starts at `burst`, not 0: the first tenant's jobs start there,
 * so a newcomer arriving while that backlog has barely moved still has its whole credit below it (priorities are
 * >= 1, a start tag cannot go below 0). While the zset never empties V climbs; past FAIR_REBASE_AT everything is
 * shifted down (below). A priority that would pass BullMQ's PRIORITY_LIMIT is clamped to it: such jobs are served
 * FIFO among themselves, after every unsaturated job (it needs one tenant with ~87,000 weight-1 jobs queued ahead of
 * the head).
 *
 * Retries keep working: BullMQ moves a failed attempt (through delayed, or straight back) into the zset with the
 * priority in its hash, which is below the current head, so it runs next. A stalled job goes to the wait list,
 * ahead of every priority, as before.
 *
 * KEYS[1] prioritized zset, KEYS[2] tag hash, KEYS[3] delayed zset, KEYS[4] active list.
 * ARGV[1] priority limit, ARGV[2] burst (priority steps), ARGV[3] rebase threshold, ARGV[4] job key prefix
 * (`{prefix}:<stage>:`), then per job in queue order: tenant, cost. Returns one priority per job.
 *
 * The rebase (the head becomes burst + 1) touches every waiting job once (ZADD + HSET of its `priority`, so a retry
 * comes back in its place) and the priorities of delayed and active jobs; it runs once per ~87,000 jobs of a stage
 * that never empties and costs about a millisecond per thousand jobs waiting (INTAKE_MAX_BACKLOG bounds them). Job
 * hashes are reached by prefix as BullMQ's own scripts do; they share the queue's hash tag. FAIR_BURST_JOBS is held
 * to 10,000 (120,000 steps), far below the rebase threshold.
 */
export const FAIR_PRIORITIES_LUA = `
local SHIFT = 4294967296
local limit = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local rebaseAt = tonumber(ARGV[3])
local jobPrefix = ARGV[4]
local v = burst
local credit = 0
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #head == 0 then
  redis.call('DEL', KEYS[2])
else
  v = math.floor(tonumber(head[2]) / SHIFT) - 1
  credit = burst
end
if v >= rebaseAt then
  local offset = v - burst
  local function lower(p) if p - offset < 1 then return 1 end return p - offset end
  local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local score = tonumber(members[i + 1])
    local p = math.floor(score / SHIFT)
    local np = lower(p)
    redis.call('ZADD', KEYS[1], np * SHIFT + (score - p * SHIFT), members[i])
    if redis.call('EXISTS', jobPrefix .. members[i]) == 1 then redis.call('HSET', jobPrefix .. members[i], 'priority', np) end
  end
  local others = redis.call('ZRANGE', KEYS[3], 0, -1)
  for _, id in ipairs(redis.call('LRANGE', KEYS[4], 0, -1)) do others[#others + 1] = id end
  for _, id in ipairs(others) do
    local p = tonumber(redis.call('HGET', jobPrefix .. id, 'priority') or '0') or 0
    if p > 0 then redis.call('HSET', jobPrefix .. id, 'priority', lower(p)) end
  end
  local tags = redis.call('HGETALL', KEYS[2])
  for i = 1, #tags, 2 do
    local f = tonumber(tags[i + 1]) - offset
    if f < 0 then f = 0 end
    redis.call('HSET', KEYS[2], tags[i], f)
  end
  v = burst
end
local out = {}
local finish = {}
for i = 5, #ARGV, 2 do
  local tenant = ARGV[i]
  local f = finish[tenant]
  if f == nil then
    f = tonumber(redis.call('HGET', KEYS[2], tenant) or '0') or 0
    if v - credit > f then f = v - credit end
  end
  local p = f + 1
  if p > limit then p = limit end
  out[#out + 1] = p
  finish[tenant] = f + tonumber(ARGV[i + 1])
end
for tenant, f in pairs(finish) do redis.call('HSET', KEYS[2], tenant, f) end
return out`;

/** The one Redis call the scheduler needs (ioredis' eval on a queue's connection). */
export interface FairScriptClient {
  eval(script: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
}

/** Assigns BullMQ priorities to stage jobs so that the tenants waiting in a stage share it by weight. */
export class FairScheduler {
  constructor(readonly config: FairConfig) {}

  static fromEnv(env: NodeJS.ProcessEnv = process.env): FairScheduler {
    return new FairScheduler(fairConfigFromEnv(env));
  }

  get enabled(): boolean {
    return this.config.enabled;
  }

  /** Priority steps one job of `tenant` costs: 12 / weight, at least 1. */
  cost(tenant: string): number {
    const weight = Math.min(FAIR_MAX_WEIGHT, Math.max(FAIR_MIN_WEIGHT, this.config.weights[tenant] ?? 1));
    return Math.max(1, Math.round(FAIR_COST_SCALE / weight));
  }

  /**
   * The priorities of jobs entering `stage`, one per tenant given (in the order they are added), or undefined when
   * fair scheduling is off (the jobs then carry no priority: BullMQ's wait list, FIFO). One script call; the tags
   * advance even if the caller's add then fails, which only delays that tenant by those jobs until the stage empties.
   */
  async priorities(client: FairScriptClient, prefix: string, stage: Stage, tenants: string[]): Promise<number[] | undefined> {
    if (!this.enabled || tenants.length === 0) return undefined;
    const q = stageQueueKeys(prefix, stage);
    const keys = [q.prioritized, fairKeys(prefix).tags(stage), q.delayed, q.active];
    const args: (string | number)[] = [PRIORITY_LIMIT, this.config.burstJobs * FAIR_COST_SCALE, FAIR_REBASE_AT, q.job('')];
    for (const tenant of tenants) args.push(tenant, this.cost(tenant));
    return (await client.eval(FAIR_PRIORITIES_LUA, keys.length, ...keys, ...args)) as number[];
  }
}
