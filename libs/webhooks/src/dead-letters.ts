/** The dead-letter state: delivery jobs that gave up, in the `webhook` queue's failed set; listed and replayed by an admin. */
import { Job, type Queue } from 'bullmq';
import { ModerationError, type DeadLetter } from '@libs/contracts';
import type { DeliveryJobData } from './delivery';

/** Delivery job ids: `evt_<outbox stream id>_<target>` (see OutboxRelay). */
const DELIVERY_ID = /^evt_\d{1,20}-\d{1,20}_[A-Za-z0-9]{1,64}(_[A-Za-z0-9]{1,64})?$/;

export class DeadLetters {
  constructor(private readonly queue: Queue) {}

  /** Failed deliveries, latest first, from `offset`. */
  async list(offset: number, limit: number): Promise<{ data: DeadLetter[]; next: number | null }> {
    const jobs = (await this.queue.getFailed(offset, offset + limit)) as Job<DeliveryJobData>[];
    const page = jobs.filter(Boolean).slice(0, limit);
    const data = page.map((job) => ({
      id: job.id!,
      event_id: job.data.event.id,
      event_type: job.data.event.type,
      tenant: job.data.tenant,
      url: job.data.url,
      attempts: job.attemptsMade,
      last_error: job.failedReason ?? null,
      failed_at: job.finishedOn ? new Date(job.finishedOn).toISOString() : null,
    }));
    return { data, next: jobs.length > limit ? offset + limit : null };
  }

  /** Moves a failed delivery back to wait with its attempts reset: a whole retry schedule again. */
  async replay(id: string): Promise<void> {
    if (!DELIVERY_ID.test(id)) throw new ModerationError('invalid_id', 'not a delivery id: they look like evt_<digits>-<digits>_<target>');
    const job = await Job.fromId<DeliveryJobData>(this.queue, id);
    if (!job || !(await job.isFailed())) throw new ModerationError('not_found', `no dead-lettered delivery ${id}`);
    await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
  }
}
