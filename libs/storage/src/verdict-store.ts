import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { ModerationError, TERMINAL_STATUSES, VerdictSchema, type Stage, type StageJob, type Verdict, type VerdictStatus } from '@libs/contracts';
import { readSetting } from '@libs/settings';
import { intakeKeys, isRedisOom, redisDeadline, tenantKeys, verdictKeys, webhookKeys, type Reservation, type StageDispatcher } from '@libs/queue';

export const VERDICT_STORE = Symbol('VERDICT_STORE');
export const DEFAULT_VERDICT_RETENTION_SECONDS = 30 * 24 * 3600;

export interface StoredVerdict {
  tenant: string;
  verdict: Verdict;
}

export interface BatchRecord {
  id: string;
  tenant: string;
  total: number;
  created_at: string;
  metadata: Record<string, unknown> | null;
  counts: Record<VerdictStatus, number>;
}

export interface IdempotencyRecord {
  kind: 'job' | 'batch';
  id: string;
  bodySha256: string;
}

/** A claim is `pending` (with the claimer's token) until the creation commits, then final for the retention. */
interface StoredClaim extends IdempotencyRecord {
  state?: 'pending';
  token?: string;
}

/** How long a pending claim lives if its request dies before committing or releasing it. */
export const IDEMPOTENCY_PENDING_TTL_MS = 15_000;
/** How long a duplicate waits for the request holding the key before answering 409 idempotency_in_progress. */
export const IDEMPOTENCY_WAIT_MS = 1500;

/** Everything one submission creates, committed in one MULTI by commitCreation. */
export interface CreationSpec {
  tenant: string;
  /** `queued` verdicts, in item order; each item's job is jobs[i]. */
  verdicts: Verdict[];
  jobs: { stage: Stage; job: StageJob }[];
  batch?: Omit<BatchRecord, 'counts'> & { callback?: string | null };
  reservation?: Reservation;
  idempotency?: { tenant: string; keySha256: string; token: string; record: IdempotencyRecord };
  /** Per item: the callback URL its verdict events are also sent to (checked at the door), or null. */
  callbacks?: (string | null)[];
}

/** Why a creation was not applied (nothing was written): its gate failed. */
export type CreationVoid = 'deadline' | 'reservation' | 'claim' | 'exists' | 'blob';

// Compare-and-delete of a pending idempotency claim: only the request that holds it may release it.
const RELEASE_CLAIM = `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local ok, rec = pcall(cjson.decode, v)
if ok and type(rec) == 'table' and rec.token == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0`;

/*
 * One submission's verdicts, batch record, idempotency finalization, reservation release and blob references, run
 * as the first command of the MULTI that also holds the BullMQ inserts. Its gate makes a late or stale commit a
 * no-op: past the deadline (the client was already answered), reservation gone, claim no longer ours, a verdict
 * already there, or a blob no longer registered (the collector took it). A MULTI cannot skip its later commands,
 * so on a failed gate each job key gets a placeholder hash: BullMQ's insert sees the id as taken and adds nothing,
 * and CREATE_TX_CLEANUP (the MULTI's last command) deletes the placeholders. Nothing outside sees them.
 *
 * KEYS: [1] reservations, [2] idempotency key, [3] blob expiry zset, [4] batch, [5] batch items, [6] batch counts,
 *       [7] tenants' in-flight counts, then per item: verdict key, job key.
 * ARGV: [1] deadline (ms, Redis time), [2] reservation member, [3] claim token, [4] final claim json,
 *       [5] retention s, [6] '1' for a batch, [7..10] batch tenant/total/created_at/metadata, [11] tenant,
 *       [12] the batch's callback URL or '',
 *       then per item: verdict json, status, blob sha or '', batch position or '', verdict id, callback URL or ''.
 */
const CREATE_TX = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = (#KEYS - 7) / 2
local reason = false
if now > tonumber(ARGV[1]) then reason = 'deadline' end
if not reason and ARGV[2] ~= '' then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
  if not score or tonumber(score) < now then reason = 'reservation' end
end
if not reason and ARGV[3] ~= '' then
  local claim = redis.call('GET', KEYS[2])
  local ok, rec = pcall(cjson.decode, claim or '')
  if not claim or not ok or type(rec) ~= 'table' or rec.token ~= ARGV[3] then reason = 'claim' end
end
if not reason then
  for i = 1, n do
    if redis.call('EXISTS', KEYS[6 + 2 * i]) == 1 then reason = 'exists' break end
    local sha = ARGV[12 + 6 * (i - 1) + 3]
    if sha ~= '' and not redis.call('ZSCORE', KEYS[3], sha) then reason = 'blob' break end
  end
end
if reason then
  for i = 1, n do
    local jobKey = KEYS[7 + 2 * i]
    if redis.call('EXISTS', jobKey) == 0 then
      redis.call('HSET', jobKey, '__intake_void', '1')
      redis.call('PEXPIRE', jobKey, 60000)
    end
  end
  return reason
end
local retention = tonumber(ARGV[5])
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[4], 'tenant', ARGV[7], 'total', ARGV[8], 'created_at', ARGV[9], 'metadata', ARGV[10])
  if ARGV[12] ~= '' then redis.call('HSET', KEYS[4], 'callback', ARGV[12]) end
  redis.call('EXPIRE', KEYS[4], retention)
end
local expiry = now + retention * 1000
for i = 1, n do
  local b = 12 + 6 * (i - 1)
  local vkey = KEYS[6 + 2 * i]
  redis.call('HSET', vkey, 'rev', 1, 'status', ARGV[b + 2], 'tenant', ARGV[11], 'json', ARGV[b + 1])
  if ARGV[b + 6] ~= '' then redis.call('HSET', vkey, 'callback', ARGV[b + 6]) end
  redis.call('EXPIRE', vkey, retention)
  if ARGV[b + 4] ~= '' then
    redis.call('ZADD', KEYS[5], ARGV[b + 4], ARGV[b + 5])
    redis.call('HINCRBY', KEYS[6], ARGV[b + 2], 1)
  end
  if ARGV[b + 3] ~= '' then redis.call('ZADD', KEYS[3], 'GT', expiry, ARGV[b + 3]) end
end
redis.call('HINCRBY', KEYS[7], ARGV[11], n)
if ARGV[6] == '1' then
  redis.call('EXPIRE', KEYS[5], retention)
  redis.call('EXPIRE', KEYS[6], retention)
end
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[1], ARGV[2]) end
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[4], 'EX', retention) end
return 'ok'`;

// The MULTI's last command: removes the placeholders a failed gate left (KEYS: the job keys).
const CREATE_TX_CLEANUP = `
local n = 0
for i = 1, #KEYS do
  if redis.call('HEXISTS', KEYS[i], '__intake_void') == 1 then redis.call('DEL', KEYS[i]) n = n + 1 end
end
return n`;

// Undo of a creation found partial after EXEC (should not happen: OOM refuses a whole MULTI). KEYS: [1] claim,
// [2] tenants' in-flight counts, then batch, items, counts (when a batch) and verdict keys. ARGV[1] the final claim
// json written by the creation, ARGV[2] tenant, ARGV[3] items the creation counted in flight.
const UNDO_CREATE = `
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('HINCRBY', KEYS[2], ARGV[2], -tonumber(ARGV[3])) <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
return 1`;

// Compare-and-set on the verdict's revision; moves the batch counter from the old status to the new one, and
// pushes the expiry of the verdict's image (KEYS[3], ARGV[6]) to the verdict's new expiry. On the move to a final
// status (the one time it happens: a final verdict is never changed again) the tenant's in-flight count drops
// (KEYS[4]) and, for a subscribed tenant (KEYS[6]) or a job with a callback, the event goes to the outbox (KEYS[5]);
// the batch's last final verdict adds batch.completed once (KEYS[7], the batch hash, remembers it).
// ARGV[7] verdict id, ARGV[8] batch id or ''.
const CAS = `
local rev = redis.call('HGET', KEYS[1], 'rev')
if not rev then return -1 end
if rev ~= ARGV[1] then return 0 end
local old = redis.call('HGET', KEYS[1], 'status')
redis.call('HSET', KEYS[1], 'rev', tonumber(rev) + 1, 'status', ARGV[3], 'json', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if ARGV[5] == '1' and old ~= ARGV[3] then
  redis.call('HINCRBY', KEYS[2], old, -1)
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[6] and ARGV[6] ~= '' then
  -- The verdict lives another retention period: so does the image it references (blob collection).
  redis.call('ZADD', KEYS[3], 'GT', now + tonumber(ARGV[4]) * 1000, ARGV[6])
end
local final = ARGV[3] == 'succeeded' or ARGV[3] == 'failed'
if final and old ~= 'succeeded' and old ~= 'failed' then
  local tenant = redis.call('HGET', KEYS[1], 'tenant')
  if redis.call('HINCRBY', KEYS[4], tenant, -1) <= 0 then redis.call('HDEL', KEYS[4], tenant) end
  local subscribed = redis.call('SISMEMBER', KEYS[6], tenant) == 1
  local callback = redis.call('HGET', KEYS[1], 'callback') or ''
  if subscribed or callback ~= '' then
    local kind = 'verdict.completed'
    if ARGV[3] == 'failed' then kind = 'verdict.failed' end
    redis.call('XADD', KEYS[5], '*', 'type', kind, 'id', ARGV[7], 'tenant', tenant, 'batch', ARGV[8], 'callback', callback, 'at', now)
  end
  if ARGV[8] ~= '' then
    local total = tonumber(redis.call('HGET', KEYS[7], 'total') or '-1')
    local done = tonumber(redis.call('HGET', KEYS[2], 'succeeded') or '0') + tonumber(redis.call('HGET', KEYS[2], 'failed') or '0')
    if total >= 0 and done >= total and redis.call('HSETNX', KEYS[7], 'completed_at', now) == 1 then
      local batchCallback = redis.call('HGET', KEYS[7], 'callback') or ''
      if subscribed or batchCallback ~= '' then
        redis.call('XADD', KEYS[5], '*', 'type', 'batch.completed', 'id', ARGV[8], 'tenant', tenant, 'batch', ARGV[8], 'callback', batchCallback, 'at', now)
      end
    end
  end
end
return 1`;

/**
 * Verdicts in Redis under the queue prefix (one hash tag, so scripts stay in one Cluster slot), with their own
 * retention: BullMQ drops finished jobs after an hour, downstream systems poll for days. Each verdict carries
 * its tenant, so reads are filtered by owner; batches keep a sorted index for cursor pagination and counters
 * by status, updated in the same script as the verdict so counts never drift.
 */
export class VerdictStore {
  private readonly keys: ReturnType<typeof verdictKeys>;
  private readonly intake: ReturnType<typeof intakeKeys>;
  private readonly tenants: ReturnType<typeof tenantKeys>;
  private readonly webhooks: ReturnType<typeof webhookKeys>;

  constructor(
    private readonly redis: Redis,
    prefix: string,
    readonly retentionSeconds = DEFAULT_VERDICT_RETENTION_SECONDS,
  ) {
    this.keys = verdictKeys(prefix);
    this.intake = intakeKeys(prefix);
    this.tenants = tenantKeys(prefix);
    this.webhooks = webhookKeys(prefix);
    redis.defineCommand('verdictCas', { numberOfKeys: 7, lua: CAS });
    redis.defineCommand('idempotencyRelease', { numberOfKeys: 1, lua: RELEASE_CLAIM });
  }

  async get(id: string): Promise<StoredVerdict | null> {
    const [tenant, json] = await this.redis.hmget(this.keys.verdict(id), 'tenant', 'json');
    if (!tenant || !json) return null;
    return { tenant, verdict: JSON.parse(json) as Verdict };
  }

  /**
   * Read-modify-write with optimistic concurrency. `change` returns the new verdict, or null to leave it as is
   * (e.g. it is already final: a retried or duplicated stage must never overwrite a finished verdict).
   * Returns the verdict as stored afterwards, or null when there is none.
   */
  async update(id: string, change: (current: Verdict) => Verdict | null): Promise<Verdict | null> {
    for (let tries = 0; tries < 50; tries++) {
      const [rev, json] = await this.redis.hmget(this.keys.verdict(id), 'rev', 'json');
      if (!rev || !json) return null;
      const current = JSON.parse(json) as Verdict;
      const next = change(current);
      if (!next) return current;
      const parsed = VerdictSchema.parse(next);
      const batchId = parsed.batch_id;
      const result = await (this.redis as unknown as Record<string, (...args: unknown[]) => Promise<number>>).verdictCas(
        this.keys.verdict(id),
        batchId ? this.keys.batchCounts(batchId) : this.keys.verdict(id),
        this.intake.blobExpiry,
        this.tenants.inflight,
        this.webhooks.outbox,
        this.webhooks.subscribed,
        batchId ? this.keys.batch(batchId) : this.keys.verdict(id),
        rev,
        JSON.stringify(parsed),
        parsed.status,
        this.retentionSeconds,
        batchId ? '1' : '0',
        parsed.image_sha256 ?? '',
        id,
        batchId ?? '',
      );
      if (result === 1) return parsed;
      if (result === -1) return null;
    }
    throw new Error(`verdict ${id}: too many concurrent updates`);
  }

  /** Applies `patch` unless the verdict is already final. */
  patch(id: string, patch: (current: Verdict) => Partial<Verdict>): Promise<Verdict | null> {
    return this.update(id, (current) => (TERMINAL_STATUSES.has(current.status) ? null : { ...current, ...patch(current) }));
  }

  async batch(id: string): Promise<BatchRecord | null> {
    const [meta, counts] = await Promise.all([this.redis.hgetall(this.keys.batch(id)), this.redis.hgetall(this.keys.batchCounts(id))]);
    if (!meta.tenant) return null;
    const count = (s: VerdictStatus) => Number(counts[s] ?? 0);
    return {
      id,
      tenant: meta.tenant,
      total: Number(meta.total),
      created_at: meta.created_at,
      metadata: meta.metadata ? (JSON.parse(meta.metadata) as Record<string, unknown> | null) : null,
      counts: { queued: count('queued'), processing: count('processing'), succeeded: count('succeeded'), failed: count('failed') },
    };
  }

  /** Verdicts of a batch in submission order, `limit` at a time; the cursor is the last item's position. */
  async batchPage(id: string, cursor: number | null, limit: number): Promise<{ verdicts: Verdict[]; nextCursor: number | null }> {
    const min = cursor === null ? '-inf' : `(${cursor}`;
    const raw = await this.redis.zrangebyscore(this.keys.batchItems(id), min, '+inf', 'WITHSCORES', 'LIMIT', 0, limit + 1);
    const items: { id: string; score: number }[] = [];
    for (let i = 0; i < raw.length; i += 2) items.push({ id: raw[i], score: Number(raw[i + 1]) });
    const page = items.slice(0, limit);
    const pipe = this.redis.pipeline();
    for (const item of page) pipe.hget(this.keys.verdict(item.id), 'json');
    const results = page.length ? ((await pipe.exec()) ?? []) : [];
    const verdicts = results.map(([, json]) => (typeof json === 'string' ? (JSON.parse(json) as Verdict) : null)).filter((v): v is Verdict => v !== null);
    return { verdicts, nextCursor: items.length > limit ? page[page.length - 1].score : null };
  }

  /**
   * Claims an idempotency key for this tenant (stored hashed), or returns the earlier request's record. The claim is
   * `pending` for IDEMPOTENCY_PENDING_TTL_MS until commitCreation makes it final in the same MULTI as the jobs. A
   * duplicate that meets a pending claim waits up to `waitMs` for its outcome: final -> the record (replayed by
   * the caller), released (the first request failed) -> it claims the key itself; still pending -> 409
   * idempotency_in_progress. A claim with another body is returned at once (the caller answers the conflict).
   */
  async claimIdempotencyKey(
    tenant: string,
    keySha256: string,
    record: IdempotencyRecord,
    waitMs = IDEMPOTENCY_WAIT_MS,
  ): Promise<{ token: string; earlier?: undefined } | { earlier: IdempotencyRecord; token?: undefined }> {
    const key = this.keys.idempotency(tenant, keySha256);
    const token = randomBytes(12).toString('hex');
    const pending = JSON.stringify({ ...record, state: 'pending', token } satisfies StoredClaim);
    const deadline = Date.now() + waitMs;
    for (;;) {
      let ok: string | null;
      try {
        ok = await this.redis.set(key, pending, 'PX', IDEMPOTENCY_PENDING_TTL_MS, 'NX');
      } catch (err) {
        // Timed out, the SET may still run when Redis wakes up; this release queues behind it on the connection.
        this.releaseIdempotencyKey(tenant, keySha256, token).catch(() => undefined);
        throw err;
      }
      if (ok === 'OK') return { token };
      const existing = await this.redis.get(key);
      if (existing) {
        const claim = JSON.parse(existing) as StoredClaim;
        const earlier: IdempotencyRecord = { kind: claim.kind, id: claim.id, bodySha256: claim.bodySha256 };
        if (claim.state !== 'pending' || claim.kind !== record.kind || claim.bodySha256 !== record.bodySha256) return { earlier };
        if (Date.now() >= deadline) {
          throw new ModerationError('idempotency_in_progress', 'a request with this Idempotency-Key is still being processed; retry later', {
            id: claim.id,
            retry_after_seconds: 1,
          });
        }
      }
      await sleep(50);
    }
  }

  /** Undoes a pending claim this request holds (its creation failed), so a retry with the key can succeed. */
  async releaseIdempotencyKey(tenant: string, keySha256: string, token: string): Promise<void> {
    await (this.redis as unknown as Record<string, (...args: unknown[]) => Promise<number>>).idempotencyRelease(
      this.keys.idempotency(tenant, keySha256),
      token,
    );
  }

  /**
   * Commits one submission atomically: one MULTI on the queue connection holds the gated creation script (verdicts,
   * batch, final idempotency claim, reservation release, blob references), the BullMQ inserts and the cleanup.
   * `waitMs` bounds how long the caller waits for EXEC; the script's deadline makes a commit that Redis runs
   * later than that a no-op, so a caller that answered an error never sees its job appear afterwards.
   * Returns 'created', or why nothing was written.
   */
  async commitCreation(dispatcher: StageDispatcher, spec: CreationSpec, waitMs: number): Promise<'created' | CreationVoid> {
    const { verdicts, jobs, batch, reservation, idempotency } = spec;
    if (verdicts.length !== jobs.length) throw new Error('one job per verdict');
    const claimKey = idempotency ? this.keys.idempotency(idempotency.tenant, idempotency.keySha256) : this.intake.reservations;
    const finalClaim = idempotency ? JSON.stringify(idempotency.record) : '';
    const batchKeys = batch
      ? [this.keys.batch(batch.id), this.keys.batchItems(batch.id), this.keys.batchCounts(batch.id)]
      : [this.intake.reservations, this.intake.reservations, this.intake.reservations];
    const jobKeys = jobs.map(({ stage, job }) => dispatcher.jobKey(stage, job.id));
    const keys = [this.intake.reservations, claimKey, this.intake.blobExpiry, ...batchKeys, this.tenants.inflight];
    const itemArgs: (string | number)[] = [];
    verdicts.forEach((verdict, i) => {
      keys.push(this.keys.verdict(verdict.id), jobKeys[i]);
      itemArgs.push(
        JSON.stringify(VerdictSchema.parse(verdict)),
        verdict.status,
        verdict.image_sha256 ?? '',
        batch ? String(i) : '',
        verdict.id,
        spec.callbacks?.[i] ?? '',
      );
    });
    const tx = await dispatcher.transaction();
    const byStage = new Map<Stage, StageJob[]>();
    for (const { stage, job } of jobs) byStage.set(stage, [...(byStage.get(stage) ?? []), job]);
    const sendArgs = (deadline: number): (string | number)[] => [
      deadline,
      reservation?.member ?? '',
      idempotency?.token ?? '',
      finalClaim,
      this.retentionSeconds,
      batch ? '1' : '',
      batch?.tenant ?? '',
      batch?.total ?? 0,
      batch?.created_at ?? '',
      batch ? JSON.stringify(batch.metadata) : '',
      spec.tenant,
      batch?.callback ?? '',
      ...itemArgs,
    ];
    // The deadline is fixed when EXEC is sent: Redis time then is at most reservation time + elapsed.
    const startedAt = Date.now();
    const deadline = reservation ? redisDeadline(reservation, waitMs, startedAt) : Number.MAX_SAFE_INTEGER;
    tx.eval(CREATE_TX, keys.length, ...keys, ...sendArgs(deadline));
    for (const [stage, stageJobs] of byStage) await dispatcher.addToTransaction(tx, stage, stageJobs);
    tx.eval(CREATE_TX_CLEANUP, jobKeys.length, ...jobKeys);
    let timer: NodeJS.Timeout | undefined;
    const results = await Promise.race([
      tx.exec(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`Command timed out: the creation was not answered within ${waitMs} ms`)),
          Math.max(0, startedAt + waitMs - Date.now()),
        );
      }),
    ]).finally(() => clearTimeout(timer));
    if (!results) throw new Error('Command aborted: the creation transaction was discarded');
    const [prepareErr, outcome] = results[0];
    const insertErrors = results.slice(1, -1).filter(([err]) => err);
    const inserted = results.slice(1, -1).length - insertErrors.length;
    if (prepareErr || outcome !== 'ok') {
      // Nothing of ours was written; inserts that went through anyway would be jobs without verdicts.
      if (inserted > 0 && prepareErr) await this.undoCreation(dispatcher, spec, finalClaim, false);
      if (prepareErr) throw prepareErr;
      return outcome as CreationVoid;
    }
    if (insertErrors.length > 0) {
      await this.undoCreation(dispatcher, spec, finalClaim, true);
      const err = insertErrors[0][0]!;
      throw isRedisOom(err) ? err : new Error(`the creation was partial and was undone: ${err.message}`);
    }
    return 'created';
  }

  /** Compensation for a partial creation: removes its jobs and (when they were written) its verdicts. */
  private async undoCreation(dispatcher: StageDispatcher, spec: CreationSpec, finalClaim: string, verdictsWritten: boolean): Promise<void> {
    const byStage = new Map<Stage, string[]>();
    for (const { stage, job } of spec.jobs) byStage.set(stage, [...(byStage.get(stage) ?? []), job.id]);
    for (const [stage, ids] of byStage) await dispatcher.remove(stage, ids);
    if (!verdictsWritten) return;
    const claimKey = spec.idempotency ? this.keys.idempotency(spec.idempotency.tenant, spec.idempotency.keySha256) : this.intake.reservations;
    const batchKeys = spec.batch ? [this.keys.batch(spec.batch.id), this.keys.batchItems(spec.batch.id), this.keys.batchCounts(spec.batch.id)] : [];
    await this.redis.eval(
      UNDO_CREATE,
      2 + batchKeys.length + spec.verdicts.length,
      claimKey,
      this.tenants.inflight,
      ...batchKeys,
      ...spec.verdicts.map((v) => this.keys.verdict(v.id)),
      finalClaim,
      spec.tenant,
      spec.verdicts.length,
    );
  }
}

export function verdictRetentionFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  return readSetting<number>(env, 'VERDICT_RETENTION_SECONDS') ?? DEFAULT_VERDICT_RETENTION_SECONDS;
}
