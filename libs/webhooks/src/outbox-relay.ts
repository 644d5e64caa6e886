/**
 * Turns outbox events into delivery jobs. The verdict scripts append one entry per final verdict (and per finished
 * batch) to the `outbox` stream; the relay reads it with a consumer group, so several notifier replicas share the
 * stream and an entry is acknowledged only after its delivery jobs are in the `webhook` queue. An entry a relay read
 * and did not acknowledge (it crashed) stays pending and is claimed by another after `claimIdleMs` (XAUTOCLAIM):
 * no event is lost. An entry handled twice gives the same job ids (`evt_<stream id>_<target>`), which BullMQ keeps
 * once while the first job is retained, and the same webhook-id in any case, so receivers de-duplicate.
 */
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger } from '@nestjs/common';
import type { JobsOptions, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { WEBHOOK_EVENT_TYPES, type WebhookEvent, type WebhookEventType } from '@libs/contracts';
import { webhookKeys } from '@libs/queue';
import type { VerdictStore } from '@libs/storage';
import { WEBHOOK_JOB_NAME, type DeliveryJobData } from './delivery';
import type { EndpointRegistry } from './endpoint-registry';

export const RELAY_GROUP = 'notifier';

/** One outbox entry as the verdict scripts write it (libs/storage CAS). */
export interface OutboxEntry {
  streamId: string;
  type: WebhookEventType;
  /** The verdict id, or the batch id for batch.completed. */
  id: string;
  tenant: string;
  batch: string;
  callback: string;
  /** Redis time (ms) the verdict became final. */
  at: string;
}

export interface RelayOptions {
  /** This relay's consumer name in the group. */
  consumer?: string;
  /** An entry pending this long with another consumer is taken over (its relay is presumed dead). */
  claimIdleMs?: number;
  /** Entries per read. */
  count?: number;
  /** How long a read blocks waiting for new entries. */
  blockMs?: number;
}

export type RawEntry = [string, string[] | null];

/** An entry as XREADGROUP or XAUTOCLAIM returns it; null when trimmed or malformed. */
export function parseOutboxEntry([streamId, fields]: RawEntry): OutboxEntry | null {
  if (!fields) return null;
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]] = fields[i + 1];
  if (!(WEBHOOK_EVENT_TYPES as readonly string[]).includes(f.type) || !f.id || !f.tenant) return null;
  return { streamId, type: f.type as WebhookEventType, id: f.id, tenant: f.tenant, batch: f.batch ?? '', callback: f.callback ?? '', at: f.at ?? '' };
}

export class OutboxRelay {
  private readonly keys: ReturnType<typeof webhookKeys>;
  private readonly consumer: string;
  private readonly claimIdleMs: number;
  private readonly count: number;
  private readonly blockMs: number;
  private readonly logger = new Logger('OutboxRelay');
  private running?: Promise<void>;
  private stopping = false;
  private handledSinceTrim = 0;

  /** `redis` is the relay's own connection: its reads block. */
  constructor(
    private readonly redis: Redis,
    prefix: string,
    private readonly registry: EndpointRegistry,
    private readonly verdicts: VerdictStore,
    private readonly queue: Queue<DeliveryJobData>,
    private readonly jobOptions: JobsOptions,
    options: RelayOptions = {},
  ) {
    this.keys = webhookKeys(prefix);
    this.consumer = options.consumer ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.claimIdleMs = options.claimIdleMs ?? 30_000;
    this.count = options.count ?? 100;
    this.blockMs = options.blockMs ?? 1000;
  }

  /** The consumer group, from the stream's start: events written before the first notifier ran are delivered too. */
  async ensureGroup(): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', this.keys.outbox, RELAY_GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!/BUSYGROUP/.test((err as Error).message)) throw err;
    }
  }

  start(): void {
    if (this.running) return;
    this.stopping = false;
    this.running = (async () => {
      await this.ensureGroup();
      while (!this.stopping) {
        try {
          await this.pollOnce(true);
        } catch (err) {
          if (this.stopping) break;
          this.logger.warn(`outbox read failed: ${(err as Error).message}`);
          await sleep(1000);
        }
      }
    })();
  }

  /** Stops after the read in progress (at most blockMs) and the entries it returned. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.running?.catch(() => undefined);
    this.running = undefined;
  }

  /** Claims stale pending entries, reads new ones (blocking up to blockMs when `block`), handles and acknowledges each. */
  async pollOnce(block = false): Promise<number> {
    const claimed = (await this.redis.xautoclaim(this.keys.outbox, RELAY_GROUP, this.consumer, this.claimIdleMs, '0-0', 'COUNT', this.count)) as [
      string,
      RawEntry[],
      string[]?,
    ];
    const entries: RawEntry[] = [...(claimed[1] ?? [])];
    const readArgs = ['GROUP', RELAY_GROUP, this.consumer, 'COUNT', this.count, ...(block && entries.length === 0 ? ['BLOCK', this.blockMs] : [])];
    const fresh = (await (this.redis as any).xreadgroup(...readArgs, 'STREAMS', this.keys.outbox, '>')) as [string, RawEntry[]][] | null;
    for (const [, list] of fresh ?? []) entries.push(...list);
    for (const raw of entries) {
      const entry = parseOutboxEntry(raw);
      // A malformed or trimmed entry is acknowledged: it can never be delivered.
      if (entry) await this.enqueue(entry);
      await this.redis.xack(this.keys.outbox, RELAY_GROUP, raw[0]);
    }
    this.handledSinceTrim += entries.length;
    if (this.handledSinceTrim >= 100 || (entries.length === 0 && this.handledSinceTrim > 0)) await this.trim();
    return entries.length;
  }

  /** The event as receivers get it: ids, status and decision, no prompt or answer (they GET poll_url for those). */
  async event(entry: OutboxEntry): Promise<WebhookEvent> {
    const id = `evt_${entry.streamId}`;
    const at = Number(entry.at);
    const created_at = new Date(Number.isFinite(at) && at > 0 ? at : Date.now()).toISOString();
    if (entry.type === 'batch.completed') {
      return {
        id,
        type: entry.type,
        created_at,
        data: { id: entry.id, tenant: entry.tenant, batch_id: entry.id, status: 'completed', poll_url: `/v1/batches/${entry.id}` },
      };
    }
    const stored = await this.verdicts.get(entry.id);
    const failed = entry.type === 'verdict.failed' || stored?.verdict.status === 'failed';
    return {
      id,
      type: entry.type,
      created_at,
      data: {
        id: entry.id,
        tenant: entry.tenant,
        batch_id: entry.batch || null,
        status: failed ? 'failed' : 'succeeded',
        decision: failed ? null : (stored?.verdict.decision ?? null),
        poll_url: `/v1/jobs/${entry.id}`,
      },
    };
  }

  /**
   * One delivery job per target: each endpoint of the tenant subscribed to the event type, and the job's (or
   * batch's) callback URL, signed with the secret of the endpoint of its origin; one job per URL. Returns the jobs.
   */
  async enqueue(entry: OutboxEntry): Promise<number> {
    const event = await this.event(entry);
    const targets = new Map<string, { id: string; endpointId: string }>();
    for (const endpoint of await this.registry.list(entry.tenant)) {
      if (endpoint.events.includes(entry.type) && !targets.has(endpoint.url)) targets.set(endpoint.url, { id: endpoint.id, endpointId: endpoint.id });
    }
    if (entry.callback && !targets.has(entry.callback)) {
      const endpoint = await this.registry.endpointForOrigin(entry.tenant, entry.callback);
      if (endpoint) targets.set(entry.callback, { id: `cb${createHash('sha256').update(entry.callback).digest('hex').slice(0, 16)}`, endpointId: endpoint.id });
      // Its endpoint was deleted after the job was accepted: nothing to sign with, so nothing is sent there.
      else this.logger.warn(`${event.id}: callback ${new URL(entry.callback).origin} has no endpoint of its origin any more; skipped`);
    }
    if (targets.size === 0) return 0;
    await this.queue.addBulk(
      [...targets].map(([url, t]) => ({
        name: WEBHOOK_JOB_NAME,
        data: { event, tenant: entry.tenant, url, endpoint_id: t.endpointId },
        // No ':' (BullMQ refuses it in ids); stable, so handling the entry again adds nothing new.
        opts: { ...this.jobOptions, jobId: `${event.id}_${t.id}` },
      })),
    );
    return targets.size;
  }

  /**
   * Drops acknowledged entries: everything before the oldest pending one, or before the group's last delivered
   * id when nothing is pending (read in that order, so an entry delivered in between is never below the bound).
   */
  async trim(): Promise<void> {
    this.handledSinceTrim = 0;
    const groups = (await this.redis.xinfo('GROUPS', this.keys.outbox)) as unknown[][];
    const group = groups
      .map((g) => Object.fromEntries(g.map((_, i, a) => (i % 2 ? [] : [a[i], a[i + 1]])).filter((e) => e.length)))
      .find((g) => g.name === RELAY_GROUP);
    if (!group) return;
    const pending = (await this.redis.xpending(this.keys.outbox, RELAY_GROUP)) as [number, string | null, string | null, unknown];
    const bound = pending[0] > 0 && pending[1] ? pending[1] : String(group['last-delivered-id']);
    if (bound && bound !== '0-0') await this.redis.xtrim(this.keys.outbox, 'MINID', bound);
  }
}
