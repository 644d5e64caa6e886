/**
 * A GPU pod must not serve on CPU: with REQUIRE_EXECUTION_PROVIDER=cuda, a worker whose sessions fall back to cpu
 * exits before it takes a job (so it is never ready), naming the provider it got. On this CPU machine the CUDA
 * provider is not installed; where it is, the worker starts on it.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { deleteKeys } from '@libs/queue';
import { spawnRole, type RoleProcess, type WorkerRoleName } from './harness/processes';
import { REDIS_URL, TINY_PACKS_ENV } from './support';

describe('REQUIRE_EXECUTION_PROVIDER', () => {
  const prefix = `{eprov${randomBytes(3).toString('hex')}}`;
  const started: RoleProcess[] = [];
  afterAll(async () => {
    for (const role of started) if (role.alive()) role.child.kill('SIGKILL');
    await Promise.all(started.map((r) => r.exited));
    await deleteKeys(REDIS_URL, prefix);
  });

  it.each(['generator', 'evaluator', 'aligner'] as WorkerRoleName[])('%s refuses to start when its sessions land on cpu', async (name) => {
    const role = spawnRole(name, {
      REDIS_URL,
      ...TINY_PACKS_ENV,
      QUEUE_PREFIX: prefix,
      HEALTH_PORT: '0',
      EXECUTION_PROVIDERS: 'cuda,cpu',
      REQUIRE_EXECUTION_PROVIDER: 'cuda',
    });
    started.push(role);
    const outcome = await Promise.race([role.exited.then((exit) => ({ exit })), role.ready(60_000).then(() => ({ ready: true }))]);
    if ('ready' in outcome) {
      // CUDA loaded here: the worker runs on it.
      expect(role.output()).toMatch(/on execution provider "cuda"|on cuda/);
    } else {
      expect(outcome.exit.code).not.toBe(0);
      expect(role.output()).toMatch(/execution provider "cuda" is required but the session runs on "cpu"/);
      expect(role.output()).not.toMatch(new RegExp(`${name} ready`));
    }
  });
});
