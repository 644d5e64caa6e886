import { DynamicModule, Inject, Injectable, Logger, Module, type OnApplicationBootstrap, type OnApplicationShutdown, type Provider } from '@nestjs/common';
import { Redis } from 'ioredis';
import { producerRedisOptions, queuePrefix, redisOptions, redisUrl, waitForRedisReady } from '@libs/queue';
import { BlobCollector, BlobRefs, blobGcIntervalMs } from './blob-gc';
import { BLOB_STORE, FileBlobStore, blobDirFromEnv } from './blob-store';
import { VERDICT_STORE, VerdictStore, verdictRetentionFromEnv } from './verdict-store';

export const STORAGE_REDIS = Symbol('STORAGE_REDIS');
export const BLOB_REFS = Symbol('BLOB_REFS');
export const BLOB_COLLECTOR = Symbol('BLOB_COLLECTOR');

@Injectable()
class StorageRedisCloser implements OnApplicationShutdown {
  constructor(@Inject(STORAGE_REDIS) private readonly redis: Redis) {}
  async onApplicationShutdown(): Promise<void> {
    // Last: workers still write verdicts while they drain.
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** Runs the blob collector every BLOB_GC_INTERVAL_SECONDS while the app is up (the intake only). */
@Injectable()
class BlobCollectorRunner implements OnApplicationBootstrap, OnApplicationShutdown {
  constructor(
    @Inject(BLOB_COLLECTOR) private readonly collector: BlobCollector,
    @Inject('BLOB_GC_INTERVAL_MS') private readonly intervalMs: number,
  ) {}
  onApplicationBootstrap(): void {
    this.collector.start(this.intervalMs);
  }
  async onApplicationShutdown(): Promise<void> {
    await this.collector.stop();
  }
}

export interface StorageModuleOptions {
  /** The intake: its Redis connection fails fast and never replays a command (producerRedisOptions). */
  producer?: boolean;
  /** Run the blob collector in this role (it needs the blob volume read-write). */
  collectBlobs?: boolean;
}

/** Blob store (BLOB_DIR) and verdict store (REDIS_URL, QUEUE_PREFIX, VERDICT_RETENTION_SECONDS) for one role. */
@Module({})
export class StorageModule {
  static register(env: NodeJS.ProcessEnv = process.env, options: StorageModuleOptions = {}): DynamicModule {
    const collector: Provider[] = options.collectBlobs
      ? [
          {
            provide: BLOB_COLLECTOR,
            inject: [BLOB_REFS, BLOB_STORE],
            useFactory: (refs: BlobRefs, store: FileBlobStore) =>
              new BlobCollector(refs, store, { onError: (err) => new Logger('BlobCollector').warn(`collection pass failed: ${(err as Error).message}`) }),
          },
          { provide: 'BLOB_GC_INTERVAL_MS', useValue: blobGcIntervalMs(env) },
          BlobCollectorRunner,
        ]
      : [];
    return {
      module: StorageModule,
      providers: [
        {
          provide: STORAGE_REDIS,
          // Commands fail fast while Redis is down (readiness reports it) instead of queueing without bound.
          useFactory: async () => {
            if (!options.producer) return new Redis({ ...redisOptions(redisUrl(env)), maxRetriesPerRequest: 2 });
            // Without an offline queue a command sent before the connection is ready fails: wait for it (bounded,
            // so the app still starts, and reports not ready, while Redis is down).
            const redis = new Redis(producerRedisOptions(redisUrl(env), env));
            redis.on('error', () => undefined);
            await waitForRedisReady(redis, 3000);
            return redis;
          },
        },
        {
          provide: BLOB_REFS,
          inject: [STORAGE_REDIS],
          useFactory: (redis: Redis) => new BlobRefs(redis, queuePrefix(env), verdictRetentionFromEnv(env)),
        },
        { provide: BLOB_STORE, inject: [BLOB_REFS], useFactory: (refs: BlobRefs) => new FileBlobStore(blobDirFromEnv(env), refs) },
        {
          provide: VERDICT_STORE,
          inject: [STORAGE_REDIS],
          useFactory: (redis: Redis) => new VerdictStore(redis, queuePrefix(env), verdictRetentionFromEnv(env)),
        },
        StorageRedisCloser,
        ...collector,
      ],
      exports: [BLOB_STORE, VERDICT_STORE, STORAGE_REDIS, BLOB_REFS, ...(options.collectBlobs ? [BLOB_COLLECTOR] : [])],
    };
  }
}
