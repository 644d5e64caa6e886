/**
 * Delivery jobs on their own BullMQ queue, `webhook`: one job per event and target, retried with exponential
 * backoff for a bounded time, then left in BullMQ's failed set, which is the dead-letter state (listed and replayed
 * by the intake's admin routes). Nothing here runs before a verdict is final: events come from the outbox the
 * verdict scripts write, so a slow or dead receiver never holds up a verdict.
 */
import { UnrecoverableError, type Job, type JobsOptions } from 'bullmq';
import type { WebhookEvent } from '@libs/contracts';
import type { EndpointRegistry } from './endpoint-registry';
import { WebhookSigner } from './signer';
import type { AttemptResult, WebhookClient } from './webhook-client';

export const WEBHOOK_QUEUE_NAME = 'webhook';
export const WEBHOOK_JOB_NAME = 'deliver';
/** The custom backoff's type name (the worker's backoffStrategy answers for it). */
export const WEBHOOK_BACKOFF_TYPE = 'webhook';
/** No retry waits longer than this: a receiver back after an outage is retried within the hour. */
export const MAX_BACKOFF_STEP_MS = 3_600_000;

/** One event to one target. The secret is not in it (job data is visible on the dashboard): it is read at send time. */
export interface DeliveryJobData {
  event: WebhookEvent;
  tenant: string;
  url: string;
  /** The endpoint whose secret signs it (for a callback URL, the endpoint of the same origin). */
  endpoint_id: string;
}

/**
 * The waits between attempts: doubling from `backoffMs`, each at most MAX_BACKOFF_STEP_MS, the last cut so that they
 * add up to `giveUpMs` exactly. Attempts = waits + 1, so the last attempt is made `giveUpMs` after the first.
 */
export function retrySchedule(backoffMs: number, giveUpMs: number, capMs = MAX_BACKOFF_STEP_MS): number[] {
  const waits: number[] = [];
  let total = 0;
  for (let step = backoffMs; total < giveUpMs && waits.length < 10_000; step = Math.min(step * 2, capMs)) {
    const wait = Math.max(1, Math.min(step, capMs, giveUpMs - total));
    waits.push(Math.round(wait));
    total += wait;
  }
  return waits;
}

/** The worker's `settings.backoffStrategy` for the schedule. */
export function scheduleBackoff(schedule: number[]): (attemptsMade: number) => number {
  return (attemptsMade) => schedule[Math.min(Math.max(attemptsMade, 1), schedule.length) - 1] ?? 0;
}

/** Options of every delivery job: the schedule's attempts; completed jobs kept an hour (they de-duplicate re-enqueues), failed ones for the dead-letter window. */
export function deliveryJobOptions(schedule: number[], deadLetterSeconds: number): JobsOptions {
  return {
    attempts: schedule.length + 1,
    backoff: { type: WEBHOOK_BACKOFF_TYPE },
    removeOnComplete: { age: 3600, count: 10_000 },
    removeOnFail: { age: Math.ceil(deadLetterSeconds) },
  };
}

/** Signs and sends one delivery job's event; throws to retry, UnrecoverableError to give up at once. */
export class DeliveryProcessor {
  constructor(
    private readonly registry: EndpointRegistry,
    private readonly client: WebhookClient,
  ) {}

  async process(job: Job<DeliveryJobData>): Promise<{ status?: number; ms: number }> {
    const { event, tenant, url, endpoint_id } = job.data;
    const endpoint = await this.registry.get(tenant, endpoint_id);
    if (!endpoint) throw new UnrecoverableError(`endpoint ${endpoint_id} was deleted: there is no secret to sign with`);
    const body = JSON.stringify(event);
    const result: AttemptResult = await this.client.post(url, body, { ...new WebhookSigner(endpoint.secret).headers(event.id, body) });
    if (result.delivered) return { status: result.status, ms: result.ms };
    // A refused target stays refused until someone changes the allow-list or the endpoint: no point retrying for a day.
    if (result.forbidden) throw new UnrecoverableError(result.error);
    throw new Error(result.error ?? 'not delivered');
  }
}
