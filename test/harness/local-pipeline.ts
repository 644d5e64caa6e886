/**
 * Every role in this process, each as its own Nest app under a private key prefix, blob directory and API keys:
 * the end-to-end tests' and the pipeline benchmark's harness. The VLM engines run on worker threads. The roles
 * come in through their public entries (apps/<role>/src/index.ts), never their internals.
 */
import { rmSync } from 'node:fs';
import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DEFAULT_REDIS_URL, deleteKeys } from '@libs/queue';
import { createIntakeApp } from '../../apps/intake-api/src';
import { GeneratorModule } from '../../apps/generator/src';
import { EvaluatorModule } from '../../apps/evaluator/src';
import { AlignerModule } from '../../apps/aligner/src';
import { NotifierModule } from '../../apps/notifier/src';
import { pipelineIdentity } from './processes';

export { deleteKeys, freePort, redisAnswers, startPrivateRedis, type PrivateRedis } from '@libs/queue';
export { pollBatch, readSampleBatch, sampleBatchForm, type SampleItem } from '../../apps/modctl/src/sample-batch';

export type Role = 'intake' | 'generator' | 'evaluator' | 'aligner' | 'notifier';

export interface LocalPipeline {
  url: string;
  apiKey: string;
  adminKey: string;
  env: NodeJS.ProcessEnv;
  blobDir: string;
  apps: Partial<Record<Role, INestApplicationContext>>;
  /** Starts a worker role later (e.g. after jobs were queued), under the same prefix and blob directory. */
  startRole(role: Exclude<Role, 'intake'>): Promise<INestApplicationContext>;
  /** Closes the roles (workers drain first), then deletes every key under the pipeline's prefix. */
  close(options?: { keepKeys?: boolean }): Promise<void>;
}

const ROLE_MODULES = {
  generator: (env: NodeJS.ProcessEnv) => GeneratorModule.register(env),
  evaluator: (env: NodeJS.ProcessEnv) => EvaluatorModule.register(env),
  aligner: (env: NodeJS.ProcessEnv) => AlignerModule.register(env),
  notifier: (env: NodeJS.ProcessEnv) => NotifierModule.register(env),
};

/** Starts the chosen roles in this process under their own key prefix, blob directory and API keys. */
export async function startLocalPipeline(
  options: { env?: NodeJS.ProcessEnv; roles?: Role[]; quiet?: boolean; /** More tenants: name -> plain key. */ tenants?: Record<string, string> } = {},
): Promise<LocalPipeline> {
  const roles = options.roles ?? ['intake', 'generator', 'evaluator', 'aligner'];
  const { apiKey, adminKey, blobDir, env } = pipelineIdentity(options);
  const logger = options.quiet ? (['error'] as const) : (['error', 'warn', 'log'] as const);
  const apps: LocalPipeline['apps'] = {};
  let url = '';
  try {
    // Workers first: their engines load while nothing waits on them yet.
    await Promise.all(
      (['generator', 'evaluator', 'aligner', 'notifier'] as const)
        .filter((r) => roles.includes(r))
        .map(async (role) => {
          apps[role] = await NestFactory.createApplicationContext(ROLE_MODULES[role](env), { logger: [...logger], abortOnError: false });
        }),
    );
    if (roles.includes('intake')) {
      const app: NestFastifyApplication = await createIntakeApp({ env, logger: [...logger] });
      await app.listen(0, '127.0.0.1');
      apps.intake = app;
      url = await app.getUrl();
      url = url.replace('[::1]', '127.0.0.1');
    }
  } catch (err) {
    // A role that failed to start (a tampered artifact, a missing pack) has already written its queues' meta keys.
    await Promise.allSettled(Object.values(apps).map((a) => a!.close()));
    await deleteKeys(env.REDIS_URL || DEFAULT_REDIS_URL, env.QUEUE_PREFIX!).catch(() => undefined);
    rmSync(blobDir, { recursive: true, force: true });
    throw err;
  }
  return {
    url,
    apiKey,
    adminKey,
    env,
    blobDir,
    apps,
    async startRole(role) {
      const app = await NestFactory.createApplicationContext(ROLE_MODULES[role](env), { logger: [...logger], abortOnError: false });
      apps[role] = app;
      return app;
    },
    async close({ keepKeys = false } = {}) {
      // Workers drain before the intake closes; each closes its own queues and Redis connections.
      await Promise.allSettled(
        Object.entries(apps)
          .filter(([r]) => r !== 'intake')
          .map(([, a]) => a!.close()),
      );
      await apps.intake?.close();
      if (!keepKeys) await deleteKeys(env.REDIS_URL || DEFAULT_REDIS_URL, env.QUEUE_PREFIX!);
      rmSync(blobDir, { recursive: true, force: true });
    },
  };
}
