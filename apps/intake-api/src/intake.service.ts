import { RevisionProfileError } from '@libs/revision';
import { randomBytes } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  ModerationError,
  type BatchAccepted,
  type JobAccepted,
  type JobSubmission,
  type Stage,
  type StageJob,
  type Verdict,
} from '@libs/contracts';
import { entryStage, StageDispatcher } from '@libs/queue';
import { BLOB_STORE, VERDICT_STORE, sha256Hex, type BlobStore, type VerdictStore } from '@libs/storage';
import { INTAKE_CONFIG, type IntakeConfig } from './config';
import { inspectImage } from './image-inspector';
import { valueDepthExceeds } from './json-depth';
import { codePointsOver, isInvisible, isWellFormed } from './text-checks';
import { IntakeMetrics } from './metrics';

/** One item as parsed from JSON or multipart, image already decoded from base64 or read from its part. */
export interface IntakeItem {
  prompt: unknown;
  answer?: unknown;
  profile?: unknown;
  metadata?: unknown;
  image?: Uint8Array;
}

interface CheckedItem {
  prompt: string;
  answer?: string;
  profile: string;
  metadata: Record<string, unknown> | null;
  image?: Uint8Array;
  imageSha256?: string;
}

const BACKLOG_TTL_MS = 200;

function newId(kind: 'job' | 'batch'): string {
  return `${kind === 'job' ? 'mod' : 'bat'}_${randomBytes(12).toString('hex')}`;
}

/** Ids derived from tenant + Idempotency-Key: the same key maps to the same BullMQ job id, so retries never fork. */
function idFromKey(kind: 'job' | 'batch', tenant: string, keySha: string): string {
  return `${kind === 'job' ? 'mod' : 'bat'}_${sha256Hex(kind, '\0', tenant, '\0', keySha).slice(0, 24)}`;
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

  async submitJob(tenant: string, item: IntakeItem, idempotencyKey?: string): Promise<JobAccepted> {
    const checked = await this.check(tenant, item, 0);
    const bodySha = this.bodyHash([checked], null);
    const keySha = idempotencyKey ? this.keyHash(idempotencyKey) : undefined;
    const id = keySha ? idFromKey('job', tenant, keySha) : newId('job');
    if (keySha) {
      const earlier = await this.verdicts.claimIdempotencyKey(tenant, keySha, { kind: 'job', id, bodySha256: bodySha });
      if (earlier) return this.replay(earlier, 'job', bodySha) as JobAccepted;
    }
    try {
      await this.ensureCapacity(1);
      await this.store([checked]);
      const job = this.stageJob(id, tenant, checked);
      await this.verdicts.create([{ tenant, verdict: this.queuedVerdict(job, checked, null) }]);
      await this.dispatcher.enqueue(entryStage(job), job);
    } catch (err) {
      if (keySha) await this.verdicts.releaseIdempotencyKey(tenant, keySha).catch(() => undefined);
      throw err;
    }
    this.metrics.accepted.inc({ kind: 'job' });
    return { id, status: 'queued', poll_url: `/v1/jobs/${id}`, created: true };
  }

  async submitBatch(tenant: string, items: IntakeItem[], metadata: unknown, idempotencyKey?: string): Promise<BatchAccepted> {
    if (items.length === 0) throw new ModerationError('batch_empty', 'a batch needs at least one item');
    if (items.length > this.config.limits.maxBatchItems) {
      throw new ModerationError('batch_too_large', `a batch holds at most ${this.config.limits.maxBatchItems} items; got ${items.length}`, {
        limit: this.config.limits.maxBatchItems,
      });
    }
    const batchMeta = this.checkMetadata(metadata, -1);
    const checked: CheckedItem[] = [];
    for (let i = 0; i < items.length; i++) checked.push(await this.check(tenant, items[i], i));
    const bodySha = this.bodyHash(checked, batchMeta);
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
    if (keySha) {
      const earlier = await this.verdicts.claimIdempotencyKey(tenant, keySha, { kind: 'batch', id: batchId, bodySha256: bodySha });
      if (earlier) {
        this.replay(earlier, 'batch', bodySha);
        return { ...accepted, created: false };
      }
    }
    try {
      await this.ensureCapacity(checked.length);
      await this.store(checked);
      const jobs = checked.map((item, i) => this.stageJob(jobIds[i], tenant, item, batchId));
      await this.verdicts.create(
        jobs.map((job, i) => ({ tenant, verdict: this.queuedVerdict(job, checked[i], batchId) })),
        { id: batchId, tenant, total: jobs.length, created_at: new Date().toISOString(), metadata: batchMeta },
      );
      const byStage = new Map<Stage, StageJob[]>();
      for (const job of jobs) {
        const stage = entryStage(job);
        byStage.set(stage, [...(byStage.get(stage) ?? []), job]);
      }
      for (const [stage, stageJobs] of byStage) await this.dispatcher.enqueueMany(stage, stageJobs);
    } catch (err) {
      if (keySha) await this.verdicts.releaseIdempotencyKey(tenant, keySha).catch(() => undefined);
      throw err;
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

  private backlogReading?: { at: number; value: Promise<number>; added?: number };



  /**
   * The backlog, read from Redis at most every BACKLOG_TTL_MS and shared by concurrent requests: counting three
   * queues on every request would cost more than the rest of intake, and the limit is a soft one anyway.
   */
  private backlog(): Promise<number> {
    const now = Date.now();
    if (!this.backlogReading || now - this.backlogReading.at > BACKLOG_TTL_MS) {
      const value = this.dispatcher.backlog();
      this.backlogReading = { at: now, value };
      value.catch(() => (this.backlogReading = undefined));
    }
    return this.backlogReading.value;
  }

  private async ensureCapacity(items: number): Promise<void> {
    // Jobs this process let in since the reading count too, so a burst cannot overshoot the limit between readings.
    const reading = await this.backlog();
    const backlog = reading + (this.backlogReading?.added ?? 0);
    if (backlog + items > this.config.limits.maxBacklog) {
      this.metrics.backpressure.inc();
      throw new ModerationError('backlog_full', `the pipeline backlog (${backlog} jobs) is at its limit; retry later`, {
        retry_after_seconds: this.config.limits.retryAfterSeconds,
      });
    }
    if (this.backlogReading) this.backlogReading.added = (this.backlogReading.added ?? 0) + items;
  }

  private async store(items: CheckedItem[]): Promise<void> {
    for (const item of items) {
      if (item.image) item.imageSha256 = await this.blobs.put(item.image);
    }
  }

  private checkMetadata(metadata: unknown, index: number): Record<string, unknown> | null {
    if (metadata === undefined || metadata === null) return null;
    const at = index >= 0 ? { item: index } : {};
    if (typeof metadata !== 'object' || Array.isArray(metadata)) throw new ModerationError('invalid_request', 'metadata must be a JSON object', at);
    // Before JSON.stringify, which recurses: metadata thousands of levels deep would overflow the stack.
    if (valueDepthExceeds(metadata, this.config.limits.maxJsonDepth)) {
      throw new ModerationError('json_too_deep', `metadata is nested deeper than ${this.config.limits.maxJsonDepth} levels`, { ...at, limit: this.config.limits.maxJsonDepth });
    }
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
    if (isInvisible(prompt)) throw new ModerationError('prompt_invisible', 'prompt holds no visible character (only zero-width, control or format characters)', at);
    if (item.answer !== undefined && typeof item.answer !== 'string') throw new ModerationError('invalid_request', 'answer must be a string', at);
    const answer = item.answer as string | undefined;
    if (answer !== undefined && codePointsOver(answer, limits.maxAnswerChars)) {
      throw new ModerationError('answer_too_long', `answer is limited to ${limits.maxAnswerChars} characters`, { ...at, limit: limits.maxAnswerChars });
    }
    if (answer !== undefined && !isWellFormed(answer)) {
      throw new ModerationError('text_invalid_unicode', 'answer holds a lone UTF-16 surrogate', { ...at, field: 'answer' });
    }
    if (item.profile !== undefined && typeof item.profile !== 'string') throw new ModerationError('invalid_request', 'profile must be a string', at);
    const profile = (item.profile as string | undefined) || 'none';
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

  private bodyHash(items: CheckedItem[], metadata: Record<string, unknown> | null): string {
    const canonical = items.map((i) => [i.prompt, i.answer ?? null, i.profile, i.metadata, i.image ? sha256Hex(i.image) : null]);
    return sha256Hex(JSON.stringify([canonical, metadata]));
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
    };
  }

  private queuedVerdict(job: StageJob, item: CheckedItem, batchId: string | null): Verdict {
    return {
      id: job.id,
      object: 'moderation.verdict',
      status: 'queued',
      decision: null,
      flagged: null,
      scores: null,
      thresholds: null,
      policy: job.policy,
      policy_version: null,
      prompt: job.prompt,
      final_answer: null,
      original_answer: item.answer ?? null,
      revision: null,
      aligner: null,
      model: null,
      timings: {},
      attempts: 0,
      error: null,
      created_at: new Date().toISOString(),
      completed_at: null,
      input_sha256: sha256Hex(item.imageSha256 ?? '', '\0', item.prompt, '\0', item.answer ?? ''),
      image_sha256: item.imageSha256 ?? null,
      profile: item.profile,
      batch_id: batchId,
      metadata: item.metadata,
    };
  }
}
