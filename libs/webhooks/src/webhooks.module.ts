/**
 * Nest wiring of the webhooks for the two roles that use them. The intake registers endpoints, checks callback URLs
 * and answers the admin dead-letter routes (`WebhooksModule.forIntake`); the notifier role runs the outbox relay and
 * the delivery worker (`WebhooksModule.forNotifier`). Both subscribe the file's tenants at start-up.
 */
import { Inject, Injectable, Logger, Module, type BeforeApplicationShutdown, type DynamicModule, type OnApplicationBootstrap } from '@nestjs/common';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { producerRedisOptions, queuePrefix, redisOptions, redisUrl, waitForRedisReady } from '@libs/queue';
import { STORAGE_REDIS, StorageModule, VERDICT_STORE, type VerdictStore } from '@libs/storage';
import { webhookConfigFromEnv, type WebhookConfig } from './config';
import { DeadLetters } from './dead-letters';
import { DeliveryProcessor, deliveryJobOptions, retrySchedule, scheduleBackoff, WEBHOOK_QUEUE_NAME, type DeliveryJobData } from './delivery';
import { EndpointRegistry } from './endpoint-registry';
import { OutboxRelay, type RelayOptions } from './outbox-relay';
import { TargetGuard } from './target-guard';
import { WebhookClient } from './webhook-client';

export const WEBHOOK_CONFIG = Symbol('WEBHOOK_CONFIG');
export const WEBHOOK_QUEUE = Symbol('WEBHOOK_QUEUE');
const WEBHOOK_REDIS = Symbol('WEBHOOK_REDIS');
const RELAY_REDIS = Symbol('RELAY_REDIS');
const RELAY_OPTIONS = Symbol('RELAY_OPTIONS');
const NOTIFIER_ENV = Symbol('NOTIFIER_ENV');
/** The waits between delivery attempts (retrySchedule), shared by the jobs' options and the worker's backoff. */
const RETRY_SCHEDULE = Symbol('RETRY_SCHEDULE');

/** How often the notifier re-subscribes the file's tenants (a replica with an older file may have pruned them). */
const RESUBSCRIBE_MS = 60_000;

@Injectable()
class IntakeWebhooksLifecycle implements OnApplicationBootstrap, BeforeApplicationShutdown {
  constructor(
    private readonly registry: EndpointRegistry,
    @Inject(WEBHOOK_QUEUE) private readonly queue: Queue,
    @Inject(WEBHOOK_REDIS) private readonly redis: Redis,
  ) {}
  async onApplicationBootstrap(): Promise<void> {
    // Redis may be down at start-up (the intake then reports not ready); the notifier re-subscribes every minute.
    await this.registry.syncSubscriptions().catch((err: Error) => new Logger('Webhooks').warn(`could not subscribe the configured tenants: ${err.message}`));
  }
  async beforeApplicationShutdown(): Promise<void> {
    await this.queue.close().catch(() => undefined);
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

@Injectable()
class NotifierLifecycle implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private worker?: Worker<DeliveryJobData>;
  private timer?: NodeJS.Timeout;
  private readonly logger = new Logger('Notifier');

  constructor(
    @Inject(WEBHOOK_CONFIG) private readonly config: WebhookConfig,
    private readonly registry: EndpointRegistry,
    private readonly relay: OutboxRelay,
    private readonly processor: DeliveryProcessor,
    @Inject(WEBHOOK_QUEUE) private readonly queue: Queue,
    @Inject(RELAY_REDIS) private readonly relayRedis: Redis,
    @Inject(NOTIFIER_ENV) private readonly env: NodeJS.ProcessEnv,
    @Inject(RETRY_SCHEDULE) private readonly schedule: number[],
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const sync = () => this.registry.syncSubscriptions().catch((err: Error) => this.logger.warn(`subscribing the configured tenants failed: ${err.message}`));
    await sync();
    this.timer = setInterval(sync, RESUBSCRIBE_MS);
    this.timer.unref();
    this.relay.start();
    this.worker = new Worker<DeliveryJobData>(WEBHOOK_QUEUE_NAME, (job) => this.processor.process(job), {
      connection: redisOptions(redisUrl(this.env)),
      prefix: queuePrefix(this.env),
      concurrency: this.config.concurrency,
      settings: { backoffStrategy: scheduleBackoff(this.schedule) },
    });
    this.worker.on('error', (err) => this.logger.warn(`delivery worker: ${err.message}`));
    this.worker.on('failed', (job, err) => {
      if (job && job.attemptsMade >= (job.opts.attempts ?? 1))
        this.logger.warn(`delivery ${job.id} to ${new URL(job.data.url).origin} gave up: ${err.message}`);
    });
  }

  /** The relay stops reading, running deliveries finish, then the connections close (before the storage one). */
  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.relay.stop();
    await this.worker?.close();
    await this.queue.close().catch(() => undefined);
    await this.relayRedis.quit().catch(() => this.relayRedis.disconnect());
  }
}

@Module({})
export class WebhooksModule {
  /** The intake: endpoint registry (its own fail-fast connection), the URL checks and the dead-letter admin. */
  static forIntake(env: NodeJS.ProcessEnv = process.env, config: WebhookConfig = webhookConfigFromEnv(env)): DynamicModule {
    return {
      module: WebhooksModule,
      providers: [
        { provide: WEBHOOK_CONFIG, useValue: config },
        { provide: TargetGuard, useFactory: () => new TargetGuard(config.allowedTargets) },
        {
          provide: WEBHOOK_REDIS,
          useFactory: async () => {
            const redis = new Redis(producerRedisOptions(redisUrl(env), env));
            redis.on('error', () => undefined);
            await waitForRedisReady(redis, 3000);
            return redis;
          },
        },
        {
          provide: EndpointRegistry,
          inject: [WEBHOOK_REDIS, TargetGuard],
          useFactory: (redis: Redis, guard: TargetGuard) => new EndpointRegistry(redis, queuePrefix(env), guard, config.configured, config.maxEndpoints),
        },
        {
          provide: WEBHOOK_QUEUE,
          useFactory: () => new Queue(WEBHOOK_QUEUE_NAME, { connection: producerRedisOptions(redisUrl(env), env), prefix: queuePrefix(env) }),
        },
        { provide: DeadLetters, inject: [WEBHOOK_QUEUE], useFactory: (queue: Queue) => new DeadLetters(queue) },
        IntakeWebhooksLifecycle,
      ],
      exports: [EndpointRegistry, DeadLetters, TargetGuard, WEBHOOK_QUEUE, WEBHOOK_CONFIG],
    };
  }

  /** The notifier role: storage (verdicts for the events' status), the relay and the delivery worker. */
  static forNotifier(env: NodeJS.ProcessEnv = process.env, options: { relay?: RelayOptions } = {}): DynamicModule {
    const config = webhookConfigFromEnv(env);
    const prefix = queuePrefix(env);
    const schedule = retrySchedule(config.backoffMs, config.giveUpMs);
    return {
      module: WebhooksModule,
      imports: [StorageModule.register(env)],
      providers: [
        { provide: WEBHOOK_CONFIG, useValue: config },
        { provide: NOTIFIER_ENV, useValue: env },
        { provide: RETRY_SCHEDULE, useValue: schedule },
        { provide: RELAY_OPTIONS, useValue: options.relay ?? {} },
        { provide: TargetGuard, useFactory: () => new TargetGuard(config.allowedTargets) },
        {
          provide: EndpointRegistry,
          inject: [STORAGE_REDIS, TargetGuard],
          useFactory: (redis: Redis, guard: TargetGuard) => new EndpointRegistry(redis, prefix, guard, config.configured, config.maxEndpoints),
        },
        { provide: RELAY_REDIS, useFactory: () => new Redis(redisOptions(redisUrl(env))) },
        { provide: WEBHOOK_QUEUE, useFactory: () => new Queue(WEBHOOK_QUEUE_NAME, { connection: redisOptions(redisUrl(env)), prefix }) },
        {
          provide: OutboxRelay,
          inject: [RELAY_REDIS, EndpointRegistry, VERDICT_STORE, WEBHOOK_QUEUE, RELAY_OPTIONS],
          useFactory: (redis: Redis, registry: EndpointRegistry, verdicts: VerdictStore, queue: Queue, relay: RelayOptions) =>
            new OutboxRelay(redis, prefix, registry, verdicts, queue, deliveryJobOptions(schedule, config.deadLetterSeconds), relay),
        },
        {
          provide: DeliveryProcessor,
          inject: [EndpointRegistry, TargetGuard],
          useFactory: (registry: EndpointRegistry, guard: TargetGuard) =>
            new DeliveryProcessor(registry, new WebhookClient(guard, { timeoutMs: config.timeoutMs, maxResponseBytes: config.maxResponseBytes })),
        },
        NotifierLifecycle,
      ],
      exports: [OutboxRelay, EndpointRegistry, WEBHOOK_QUEUE],
    };
  }
}
