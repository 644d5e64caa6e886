import { randomBytes } from 'node:crypto';
import type { Stage } from '@libs/contracts';
import { intakeKeys, stageQueueKeys, tenantKeys } from './keys';

/** A reservation lives this long unless committed or released first (a crashed intake's slots come back). */
export const RESERVATION_TTL_MS = 30_000;

/**
 * Cluster-wide admission: counts every unfinished job of the given stage queues (wait + paused + active lists,
 * prioritized + delayed zsets) plus the slots other requests reserved and have not committed yet, and reserves
 * `items` slots only if the total stays within the limit. One script, so two intake replicas can never both take
 * the last slot. Expired reservations (an intake that died between reserving and committing) are dropped first.
 *
 * Per tenant, in the same script (so no limit can be passed twice either): the tenant's items in flight (the
 * `tenantKeys.inflight` hash, kept exact by the verdict scripts) plus its own pending reservations must stay within
 * its in-flight limit and within its backlog share (both 0 = none). The tenant's checks come first: a tenant over its
 * own limit is told so even when the global backlog is full too.
 *
 * A reservation member is `<token>:<tenant hex>:<items>`: the tenant is hex-encoded, so a ':' in its name cannot
 * confuse the parse; a member without a tenant part (`<token>:<items>`, written by an older intake during a rolling
 * upgrade) still counts against the global limit.
 *
 * KEYS[1] reservations zset, KEYS[2] tenants' in-flight hash, then ARGV[5] list keys, then zset keys.
 * ARGV[1] items, ARGV[2] limit, ARGV[3] token, ARGV[4] ttl ms, ARGV[5] number of list keys, ARGV[6] tenant or '',
 * ARGV[7] tenant hex, ARGV[8] tenant's in-flight limit, ARGV[9] tenant's backlog-share cap (items; 0 = none).
 * Returns {1 admitted | 0 backlog full | 2 tenant in-flight limit | 3 tenant backlog share, backlog before this
 * request, Redis time in ms, the tenant's items in flight and reserved before this request}.
 */
export const RESERVE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local lists = tonumber(ARGV[5])
local backlog = 0
for i = 3, #KEYS do
  if i <= lists + 2 then backlog = backlog + redis.call('LLEN', KEYS[i]) else backlog = backlog + redis.call('ZCARD', KEYS[i]) end
end
local tenantHex = ARGV[7]
local held = 0
if ARGV[6] ~= '' then held = tonumber(redis.call('HGET', KEYS[2], ARGV[6]) or '0') end
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local n = tonumber(string.match(member, ':(%d+)$')) or 0
  backlog = backlog + n
  if tenantHex ~= '' and string.match(member, '^[^:]*:(%x*):%d+$') == tenantHex then held = held + n end
end
local items = tonumber(ARGV[1])
local maxInFlight = tonumber(ARGV[8])
local shareCap = tonumber(ARGV[9])
if maxInFlight > 0 and held + items > maxInFlight then return {2, backlog, now, held} end
if shareCap > 0 and held + items > shareCap then return {3, backlog, now, held} end
if backlog + items > tonumber(ARGV[2]) then return {0, backlog, now, held} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[3] .. ':' .. tenantHex .. ':' .. items)
return {1, backlog, now, held}`;

/** What the admission script needs: the reservations key, the tenants' in-flight hash, then list keys, then zset keys. */
export function backlogKeys(prefix: string, stages: Stage[]): { keys: string[]; lists: number } {
  const lists: string[] = [];
  const zsets: string[] = [];
  for (const stage of stages) {
    const k = stageQueueKeys(prefix, stage);
    lists.push(k.wait, k.paused, k.active);
    zsets.push(k.prioritized, k.delayed);
  }
  return { keys: [intakeKeys(prefix).reservations, tenantKeys(prefix).inflight, ...lists, ...zsets], lists: lists.length };
}

/** A tenant's limits as the admission script checks them (0 = no limit). */
export interface TenantAdmission {
  tenant: string;
  /** Items in flight plus pending reservations the tenant may hold. */
  maxInFlight: number;
  /** The same count's cap from its backlog share (see backlogShareCap). */
  backlogShareCap: number;
}

/** A tenant as it appears in reservation members: hex of its UTF-8 bytes (no ':' whatever the name); '' for none. */
export function tenantHex(tenant: string | undefined): string {
  return tenant ? Buffer.from(tenant, 'utf8').toString('hex') : '';
}

/** The reservation member: token, hex tenant (empty without one), items. */
export function reservationMember(token: string, tenant: string | undefined, items: number): string {
  return `${token}:${tenantHex(tenant)}:${items}`;
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

/** Why a reservation was refused: the global backlog, or one of the tenant's own limits. */
export type ReserveRefusal = 'backlog_full' | 'tenant_in_flight_limit' | 'tenant_backlog_share';

export type ReserveResult =
  { ok: true; reservation: Reservation; backlog: number; tenantHeld: number } | { ok: false; reason: ReserveRefusal; backlog: number; tenantHeld: number };

/** The admission script's first reply field, by meaning. */
export const RESERVE_OUTCOMES: Record<number, ReserveRefusal | 'admitted'> = {
  1: 'admitted',
  0: 'backlog_full',
  2: 'tenant_in_flight_limit',
  3: 'tenant_backlog_share',
};

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
