import { randomBytes } from 'node:crypto';
import type { Stage } from '@libs/contracts';
import { intakeKeys, stageQueueKeys } from './keys';

/** A reservation lives this long unless committed or released first (a crashed intake's slots come back). */
export const RESERVATION_TTL_MS = 30_000;

/**
 * Cluster-wide admission: counts every unfinished job of the given stage queues (wait + paused + active lists,
 * prioritized + delayed zsets) plus the slots other requests reserved and have not committed yet, and reserves
 * `items` slots only if the total stays within the limit. One script, so two intake replicas can never both take
 * the last slot. Expired reservations (an intake that died between reserving and committing) are dropped first.
 *
 * KEYS[1] reservations zset, then ARGV[5] list keys, then zset keys.
 * ARGV[1] items, ARGV[2] limit, ARGV[3] token, ARGV[4] ttl ms, ARGV[5] number of list keys.
 * Returns {1|0, backlog before this request, Redis time in ms}.
 */
export const RESERVE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local lists = tonumber(ARGV[5])
local backlog = 0
for i = 2, #KEYS do
  if i <= lists + 1 then backlog = backlog + redis.call('LLEN', KEYS[i]) else backlog = backlog + redis.call('ZCARD', KEYS[i]) end
end
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  backlog = backlog + (tonumber(string.match(member, ':(%d+)$')) or 0)
end
local items = tonumber(ARGV[1])
if backlog + items > tonumber(ARGV[2]) then return {0, backlog, now} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[3] .. ':' .. items)
return {1, backlog, now}`;

/** What the admission script needs: the reservations key, then list keys, then zset keys. */
export function backlogKeys(prefix: string, stages: Stage[]): { keys: string[]; lists: number } {
  const lists: string[] = [];
  const zsets: string[] = [];
  for (const stage of stages) {
    const k = stageQueueKeys(prefix, stage);
    lists.push(k.wait, k.paused, k.active);
    zsets.push(k.prioritized, k.delayed);
  }
  return { keys: [intakeKeys(prefix).reservations, ...lists, ...zsets], lists: lists.length };
}

/** Slots taken by one request until its creation commits (the commit removes `member` atomically) or it expires. */
export interface Reservation {
  member: string;
  items: number;
  /** Redis time (ms) when the reservation was made. */
  redisTimeMs: number;
  /** Local time (Date.now()) when its reply arrived: with redisTimeMs, bounds Redis time from above later on. */
  receivedAt: number;
}

export type ReserveResult = { ok: true; reservation: Reservation; backlog: number } | { ok: false; backlog: number };

export function newReservationToken(): string {
  return randomBytes(12).toString('hex');
}

/**
 * A deadline in Redis time for a command sent now: Redis time at send is at most `redisTimeMs + (now - receivedAt)`,
 * so a script that checks `TIME <= deadline` cannot run after the caller gave up waiting `waitMs` for it.
 */
export function redisDeadline(reservation: Pick<Reservation, 'redisTimeMs' | 'receivedAt'>, waitMs: number, now = Date.now()): number {
  return reservation.redisTimeMs + Math.max(0, now - reservation.receivedAt) + waitMs;
}
