/**
 * modctl blobs backfill [--json]
 *   Registers every image in BLOB_DIR that no verdict references yet (stored before blob collection existed) for one
 *   retention period (VERDICT_RETENTION_SECONDS) from now, so the intake's collector deletes it then. Images a verdict
 *   references keep their expiry. Safe to run while the system serves, and more than once.
 */
import { Redis } from 'ioredis';
import { queuePrefix, redisOptions, redisUrl } from '@libs/queue';
import { BlobRefs, blobDirFromEnv, FileBlobStore, verdictRetentionFromEnv } from '@libs/storage';
import { printError, wantsJson } from '../output';

export const summary = 'blobs backfill [--json]: give images stored before blob collection an expiry, so they are collected';

export async function run(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const json = wantsJson(argv);
  const rest = argv.filter((a) => a !== '--json');
  if (rest.length !== 1 || rest[0] !== 'backfill') {
    printError(json, 'usage', 'usage: modctl blobs backfill [--json]');
    return 2;
  }
  const redis = new Redis(redisOptions(redisUrl(env), { maxRetriesPerRequest: 2 }));
  try {
    const dir = blobDirFromEnv(env);
    const retentionSeconds = verdictRetentionFromEnv(env);
    const refs = new BlobRefs(redis, queuePrefix(env), retentionSeconds);
    const registered = await refs.backfill(new FileBlobStore(dir).list());
    if (json) console.log(JSON.stringify({ dir, registered, retention_seconds: retentionSeconds }));
    else console.log(`${registered} unreferenced image(s) in ${dir} registered; collected ${retentionSeconds} s from now unless a verdict references them`);
    return 0;
  } catch (err) {
    printError(json, 'backfill_failed', (err as Error).message);
    return 1;
  } finally {
    redis.disconnect();
  }
}
