import { DynamicModule, Inject, Injectable, Module, type OnApplicationShutdown } from '@nestjs/common';
import { Redis } from 'ioredis';
import { queuePrefix, redisOptions, redisUrl } from '@libs/queue';
import { BLOB_STORE, FileBlobStore, blobDirFromEnv } from './blob-store';
import { VERDICT_STORE, VerdictStore, verdictRetentionFromEnv } from './verdict-store';

export const STORAGE_REDIS = Symbol('STORAGE_REDIS');

@Injectable()
class StorageRedisCloser implements OnApplicationShutdown {
  constructor(@Inject(STORAGE_REDIS) private readonly redis: Redis) {}
  async onApplicationShutdown(): Promise<void> {
    // Last: workers still write verdicts while they drain.
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** Blob store (BLOB_DIR) and verdict store (REDIS_URL, QUEUE_PREFIX, VERDICT_RETENTION_SECONDS) for one role. */
@Module({})
export class StorageModule {
  static register(env: NodeJS.ProcessEnv = process.env): DynamicModule {
    return {
      module: StorageModule,
      providers: [
        {
          provide: STORAGE_REDIS,
          // Commands fail fast while Redis is down (readiness reports it) instead of queueing without bound.
          useFactory: () => new Redis({ ...redisOptions(redisUrl(env)), maxRetriesPerRequest: 2 }),
        },
        { provide: BLOB_STORE, useFactory: () => new FileBlobStore(blobDirFromEnv(env)) },
        {
          provide: VERDICT_STORE,
          inject: [STORAGE_REDIS],
          useFactory: (redis: Redis) => new VerdictStore(redis, queuePrefix(env), verdictRetentionFromEnv(env)),
        },
        StorageRedisCloser,
      ],
      exports: [BLOB_STORE, VERDICT_STORE, STORAGE_REDIS],
    };
  }
}
