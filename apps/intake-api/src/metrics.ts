import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { StageDispatcher } from '@libs/queue';

/** Prometheus figures of the intake role; one registry per app so in-process tests can run several apps. */
@Injectable()
export class IntakeMetrics {
  readonly registry = new Registry();
  readonly httpRequests = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests by method, route and status',
    labelNames: ['method', 'route', 'status'],
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by method and route',
    labelNames: ['method', 'route'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly accepted = new Counter({
    name: 'moderation_intake_accepted_total',
    help: 'Jobs accepted, by kind (job, batch_item)',
    labelNames: ['kind'],
    registers: [this.registry],
  });
  readonly rejected = new Counter({
    name: 'moderation_intake_rejected_total',
    help: 'Requests rejected, by error code',
    labelNames: ['code'],
    registers: [this.registry],
  });
  readonly backpressure = new Counter({
    name: 'moderation_intake_backpressure_total',
    help: 'Submissions refused with 429 because the backlog was full',
    registers: [this.registry],
  });

  constructor(dispatcher: StageDispatcher) {
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: 'moderation_queue_jobs',
      help: 'Jobs per stage queue and state, read from Redis at scrape time',
      labelNames: ['queue', 'state'],
      registers: [this.registry],
      async collect() {
        for (const queue of dispatcher.all()) {
          const counts = await queue.getJobCounts('wait', 'prioritized', 'delayed', 'active', 'completed', 'failed');
          for (const [state, value] of Object.entries(counts)) this.set({ queue: queue.name, state }, value);
        }
      },
    });
  }
}
