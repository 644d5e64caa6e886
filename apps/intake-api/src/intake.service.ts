import { DEFAULT_PROFILE, RevisionProfileError } from '@libs/revision';
import { randomBytes } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { ModerationError, queuedVerdict, type BatchAccepted, type JobAccepted, type StageJob, type Verdict } from '@libs/contracts';
import { asRedisError, backlogShareCap, entryStage, StageDispatcher, type Reservation } from '@libs/queue';
import { BLOB_STORE, VERDICT_STORE, sha256Hex, type BlobStore, type CreationSpec, type IdempotencyRecord, type VerdictStore } from '@libs/storage';
import { traceCarrier } from '@libs/telemetry';
import { INTAKE_CONFIG, type IntakeConfig } from './config';
import { inspectImage } from './image-inspector';
import { valueDepthExceeds } from './json-depth';
import { codePointsOver, hasIllFormedString, isInvisible, isWellFormed } from './text-checks';
import { IntakeMetrics } from './metrics';

/** One item as parsed from JSON or multipart, image already decoded from base64 or read from its part. */
export interface IntakeItem {
  prompt: unknown;
  answer?: unknown;
  profile?: unknown;
  metadata?: unknown;
  image?: Uint8Array;
  /** The raw callback_url field (the controller checks it against the tenant's webhooks). */
  callbackUrl?: unknown;
}

interface CheckedItem {
  prompt: string;
  answer?: string;
  profile: string;
  metadata: Record<string, unknown> | null;
  image?: Uint8Array;
  imageSha256?: string;
}

function newId(kind: 'job' | 'batch'): string {
  return `${kind === 'job' ? 'mod' : 'bat'}_${randomBytes(12).toString('hex')}`;
}

/** Ids derived from tenant + Idempotency-Key: the same key maps to the same BullMQ job id, so retries never fork. */
function idFromKey(kind: 'job' | 'batch', tenant: string, keySha: string): string {
  return `${kind === 'job' ? 'mod' : 'bat'}_${sha256Hex(kind, '\0', tenant, '\0', keySha).slice(0, 24)}`;
}

/**
 * Items of a batch checked (image decode) and stored (blob write) at once. One after another, a 200-image batch spent
 * ~0.55 s in the intake (timed in one process), mostly waiting on sharp's and the file system's threads one item at a
 * time, before any job existed. 4 is libuv's default thread pool, which sharp's decodes and the file writes run on; it
 * also bounds the decoded pixels held at once to four images' worth.
 */
const ITEM_CONCURRENCY = 4;

/**
 * `fn` over `items` with at most `limit` running, results in item order. On a failure no further item starts, the
 * ones running finish, and the failure of the lowest item index is thrown: items start in order, so that is the
 * error a one-by-one loop would have thrown (a client is told about its first bad item, whichever failed first).
 */
async function mapInOrder<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  const failures = new Map<number, unknown>();
  let next = 0;
  const lane = async () => {
    while (next < items.length && failures.size === 0) {
      const i = next++;
      try {
        results[i] = await fn(items[i], i);
      } catch (err) {
        failures.set(i, err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (failures.size) throw failures.get(Math.min(...failures.keys()));
  return results;
}

/**
 * The front door: validates every item against the limits, refuses work when the backlog is full, stores images
 * by sha256, writes `queued` verdicts and enqueues. Every check happens before anything is stored or enqueued,
 * so a rejected request leaves no trace.
 */
@Injectable()
export class IntakeService {
  constructor(
    @Inject(INTAKE_CONFIG) private readonly config: IntakeConfig,
    private readonly dispatcher: StageDispatcher,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    @Inject(VERDICT_STORE) private readonly verdicts: VerdictStore,
    private readonly metrics: IntakeMetrics,
  ) {}

  async submitJob(tenant: string, item: IntakeItem, idempotencyKey?: string, callback?: string): Promise<JobAccepted> {
    const checked = await this.check(tenant, item, 0);
    const bodySha = this.bodyHash([checked], null, callback);
    const keySha = idempotencyKey ? this.keyHash(idempotencyKey) : undefined;
    const id = keySha ? idFromKey('job', tenant, keySha) : newId('job');
    const earlier = await this.create(tenant, [checked], { kind: 'job', id, bodySha256: bodySha }, keySha, () => {
      const job = this.stageJob(id, tenant, checked);
      return { jobs: [job], verdicts: [this.queuedVerdict(job, checked, null)], callbacks: [callback ?? null] };
    });
    if (earlier) return this.replay(earlier, 'job', bodySha) as JobAccepted;
    this.metrics.accepted.inc({ kind: 'job' });
    return { id, status: 'queued', poll_url: `/v1/jobs/${id}`, created: true };
  }

  async submitBatch(tenant: string, items: IntakeItem[], metadata: unknown, idempotencyKey?: string, callback?: string): Promise<BatchAccepted> {
    if (items.length === 0) throw new ModerationError('batch_empty', 'a batch needs at least one item');
    if (items.length > this.config.limits.maxBatchItems) {
      throw new ModerationError('batch_too_large', `a batch holds at most ${this.config.limits.maxBatchItems} items; got ${items.length}`, {
        limit: this.config.limits.maxBatchItems,
      });
    }
    const batchMeta = this.checkMetadata(metadata, -1);
    const checked = await mapInOrder(items, ITEM_CONCURRENCY, (item, i) => this.check(tenant, item, i));
    const bodySha = this.bodyHash(checked, batchMeta, callback);
    const keySha = idempotencyKey ? this.keyHash(idempotencyKey) : undefined;
    const batchId = keySha ? idFromKey('batch', tenant, keySha) : newId('batch');
    const jobIds = checked.map((_, i) => `${batchId.replace(/^bat_/, 'mod_')}_${i}`);
    const accepted: BatchAccepted = {
      id: batchId,
      items: checked.length,
      job_ids: jobIds,
      poll_url: `/v1/batches/${batchId}`,
      verdicts_url: `/v1/batches/${batchId}/verdicts`,
      created: true,
    };
    const earlier = await this.create(tenant, checked, { kind: 'batch', id: batchId, bodySha256: bodySha }, keySha, () => {
      const jobs = checked.map((item, i) => this.stageJob(jobIds[i], tenant, item, batchId));
      return {
        jobs,
        verdicts: jobs.map((job, i) => this.queuedVerdict(job, checked[i], batchId)),
        batch: { id: batchId, tenant, total: jobs.length, created_at: new Date().toISOString(), metadata: batchMeta, callback: callback ?? null },
        // The batch's callback gets each item's verdict events too, and batch.completed.
        callbacks: jobs.map(() => callback ?? null),
      };
    });
    if (earlier) {
      this.replay(earlier, 'batch', bodySha);
      return { ...accepted, created: false };
    }
    this.metrics.accepted.inc({ kind: 'batch_item' }, checked.length);
    return accepted;
  }

  private replay(earlier: { kind: string; id: string; bodySha256: string }, kind: 'job' | 'batch', bodySha: string): JobAccepted | undefined {
    if (earlier.kind !== kind || earlier.bodySha256 !== bodySha) {
      throw new ModerationError('idempotency_conflict', 'this Idempotency-Key was used with a different request body', { id: earlier.id });
    }
    if (kind === 'job') return { id: earlier.id, status: 'queued', poll_url: `/v1/jobs/${earlier.id}`, created: false };
    return undefined;
  }

  private keyHash(key: string): string {
    if (key.length < 1 || key.length > 255) throw new ModerationError('invalid_request', 'Idempotency-Key must be 1 to 255 characters');
    return sha256Hex(key);
  }

  /**
   * Claims the Idempotency-Key (pending until the commit), reserves backlog slots cluster-wide, stores the images,
   * and commits verdicts, batch and jobs in one MULTI (VerdictStore.commitCreation). Returns the earlier request's
   * record when the key was already used (the caller replays it), undefined once created. Any failure gives the
   * reservation and the claim back; Redis failures become 503 redis_full / redis_unavailable. A commit that did
   * not answer in time is gated by a deadline, so nothing is created after the client was answered.
   */
  private async create(
    tenant: string,
    items: CheckedItem[],
    record: IdempotencyRecord,
    keySha: string | undefined,
    build: () => { jobs: StageJob[]; verdicts: Verdict[]; batch?: CreationSpec['batch']; callbacks?: CreationSpec['callbacks'] },
  ): Promise<IdempotencyRecord | undefined> {
    let token: string | undefined;
    let reservation: Reservation | undefined;
    let created = false;
    try {
      if (keySha) {
        const claim = await this.verdicts.claimIdempotencyKey(tenant, keySha, record);
        if (claim.earlier) return claim.earlier;
        token = claim.token;
      }
      reservation = await this.reserve(tenant, items.length);
      await this.store(items);
      const { jobs, verdicts, batch, callbacks } = build();
      const outcome = await this.verdicts.commitCreation(
        this.dispatcher,
        {
          tenant,
          verdicts,
          jobs: jobs.map((job) => ({ stage: entryStage(job), job })),
          batch,
          callbacks,
          reservation,
          idempotency: keySha && token ? { tenant, keySha256: keySha, token, record } : undefined,
        },
        this.dispatcher.commandTimeoutMs,
      );
      if (outcome === 'created') {
        created = true;
        return undefined;
      }
      // The id exists already (an earlier request with this key whose claim expired): the same job, not a new one.
      if (outcome === 'exists' && keySha) return record;
      throw new ModerationError('redis_unavailable', `the submission could not be committed (${outcome}); nothing was created; retry`);
    } catch (err) {
      throw asRedisError(err);
    } finally {
      // Not awaited: the answer must not wait on a Redis that may be down. Both are no-ops after a commit.
      if (!created) {
        if (reservation) this.dispatcher.release(reservation).catch(() => undefined);
        if (keySha && token) this.verdicts.releaseIdempotencyKey(tenant, keySha, token).catch(() => undefined);
      }
    }
  }

  /**
   * Reserves backlog slots cluster-wide (all replicas, one Redis script) within the global backlog and the tenant's
   * in-flight limit and backlog share, or refuses with the 429 of the limit that was hit.
   */
  private async reserve(tenant: string, items: number): Promise<Reservation> {
    const { maxBacklog, retryAfterSeconds } = this.config.limits;
    const limits = this.config.tenantLimits.for(tenant);
    const admission = { tenant, maxInFlight: limits.maxInFlight, backlogShareCap: backlogShareCap(limits, maxBacklog) };
    // A batch that could never fit the tenant's own limits is refused as too large, not with a 429 no wait would pass.
    const cap = Math.min(...[admission.maxInFlight, admission.backlogShareCap].filter((n) => n > 0));
    if (items > cap) {
      throw new ModerationError('batch_too_large', `this tenant may hold at most ${cap} items in flight; the batch has ${items}`, { limit: cap });
    }
    const result = await this.dispatcher.reserve(items, maxBacklog, { tenant: admission });
    if (result.ok) return result.reservation;
    const retry = { retry_after_seconds: retryAfterSeconds };
    if (result.reason === 'tenant_in_flight_limit') {
      throw new ModerationError(
        'tenant_in_flight_limit',
        `this tenant has ${result.tenantHeld} items in flight; with ${items} more it would pass its limit of ${admission.maxInFlight}; retry later`,
        { ...retry, limit: admission.maxInFlight, in_flight: result.tenantHeld },
      );
    }
    if (result.reason === 'tenant_backlog_share') {
      throw new ModerationError(
        'tenant_backlog_share',
        `this tenant holds ${result.tenantHeld} items of the pipeline backlog; with ${items} more it would pass its share (${limits.maxBacklogShare} of ${maxBacklog}: ${admission.backlogShareCap} items); retry later`,
        { ...retry, limit: admission.backlogShareCap, share: limits.maxBacklogShare, in_flight: result.tenantHeld },
      );
    }
    this.metrics.backpressure.inc();
    throw new ModerationError('backlog_full', `the pipeline backlog (${result.backlog} jobs) is at its limit; retry later`, retry);
  }

  private async store(items: CheckedItem[]): Promise<void> {
    await mapInOrder(items, ITEM_CONCURRENCY, async (item) => {
      if (item.image) item.imageSha256 = await this.blobs.put(item.image);
    });
  }

  private checkMetadata(metadata: unknown, index: number): Record<string, unknown> | null {
    if (metadata === undefined || metadata === null) return null;
    const at = index >= 0 ? { item: index } : {};
    if (typeof metadata !== 'object' || Array.isArray(metadata)) throw new ModerationError('invalid_request', 'metadata must be a JSON object', at);
    // Before JSON.stringify, which recurses: metadata thousands of levels deep would overflow the stack.
    if (valueDepthExceeds(metadata, this.config.limits.maxJsonDepth)) {
      throw new ModerationError('json_too_deep', `metadata is nested deeper than ${this.config.limits.maxJsonDepth} levels`, {
        ...at,
        limit: this.config.limits.maxJsonDepth,
      });
    }
    if (hasIllFormedString(metadata)) throw new ModerationError('text_invalid_unicode', 'metadata holds a lone UTF-16 surrogate', { ...at, field: 'metadata' });
    if (Buffer.byteLength(JSON.stringify(metadata)) > this.config.limits.maxMetadataBytes) {
      throw new ModerationError('metadata_too_large', `metadata is limited to ${this.config.limits.maxMetadataBytes} bytes of JSON`, at);
    }
    return metadata as Record<string, unknown>;
  }

  private async check(tenant: string, item: IntakeItem, index: number): Promise<CheckedItem> {
    const { limits } = this.config;
    const at = { item: index };
    const wrap = async <T>(fn: () => Promise<T> | T): Promise<T> => {
      try {
        return await fn();
      } catch (err) {
        if (err instanceof ModerationError) throw new ModerationError(err.code, err.message, { ...err.details, ...at });
        throw err;
      }
    };
    if (item.prompt !== undefined && typeof item.prompt !== 'string') throw new ModerationError('invalid_request', 'prompt must be a string', at);
    const prompt = (item.prompt as string | undefined) ?? '';
    // Length first, by UTF-16 units where that decides (no per-character work on a long string), then the content.
    if (codePointsOver(prompt, limits.maxPromptChars)) {
      throw new ModerationError('prompt_too_long', `prompt is limited to ${limits.maxPromptChars} characters`, { ...at, limit: limits.maxPromptChars });
    }
    if (!isWellFormed(prompt)) throw new ModerationError('text_invalid_unicode', 'prompt holds a lone UTF-16 surrogate', { ...at, field: 'prompt' });
    if (prompt.trim().length === 0) throw new ModerationError('prompt_empty', 'prompt must not be empty', at);
    if (isInvisible(prompt))
      throw new ModerationError('prompt_invisible', 'prompt holds no visible character (only zero-width, control or format characters)', at);
    if (item.answer !== undefined && typeof item.answer !== 'string') throw new ModerationError('invalid_request', 'answer must be a string', at);
    const answer = item.answer as string | undefined;
    if (answer !== undefined && codePointsOver(answer, limits.maxAnswerChars)) {
      throw new ModerationError('answer_too_long', `answer is limited to ${limits.maxAnswerChars} characters`, { ...at, limit: limits.maxAnswerChars });
    }
    if (answer !== undefined && !isWellFormed(answer)) {
      throw new ModerationError('text_invalid_unicode', 'answer holds a lone UTF-16 surrogate', { ...at, field: 'answer' });
    }
    if (item.profile !== undefined && typeof item.profile !== 'string') throw new ModerationError('invalid_request', 'profile must be a string', at);
    // No profile: `default`, which each worker resolves to its model's default profile (or none).
    const profile = (item.profile as string | undefined) || DEFAULT_PROFILE;
    try {
      this.config.profiles.check(profile, tenant);
    } catch (err) {
      if (err instanceof RevisionProfileError && (err.code === 'unknown_profile' || err.code === 'profile_not_allowed')) {
        throw new ModerationError(err.code, err.message, { ...at, profile });
      }
      throw err;
    }
    const metadata = this.checkMetadata(item.metadata, index);
    if (item.image) await wrap(() => inspectImage(item.image!, limits, this.config.decodeCheck));
    return { prompt, answer, profile, metadata, image: item.image };
  }

  private bodyHash(items: CheckedItem[], metadata: Record<string, unknown> | null, callback?: string): string {
    const canonical = items.map((i) => [i.prompt, i.answer ?? null, i.profile, i.metadata, i.image ? sha256Hex(i.image) : null]);
    // The callback only when given, so the hashes of requests without one are those they always were.
    return sha256Hex(JSON.stringify(callback ? [canonical, metadata, callback] : [canonical, metadata]));
  }

  private stageJob(id: string, tenant: string, item: CheckedItem, batchId?: string): StageJob {
    return {
      id,
      tenant,
      imageSha256: item.imageSha256,
      prompt: item.prompt,
      answer: item.answer,
      profile: item.profile,
      policy: this.config.policy,
      batchId,
      attempt: 0,
      // The active HTTP span's W3C context (none with tracing off): the stages continue this request's trace.
      ...traceCarrier(),
    };
  }

  private queuedVerdict(job: StageJob, item: CheckedItem, batchId: string | null): Verdict {
    return queuedVerdict({
      id: job.id,
      policy: job.policy,
      prompt: job.prompt,
      original_answer: item.answer ?? null,
      input_sha256: sha256Hex(item.imageSha256 ?? '', '\0', item.prompt, '\0', item.answer ?? ''),
      image_sha256: item.imageSha256 ?? null,
      profile: item.profile,
      batch_id: batchId,
      metadata: item.metadata,
    });
  }
}
