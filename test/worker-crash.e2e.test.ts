/**
 * Generators as real child processes (`node -r @swc-node/register apps/generator/src/main.ts`): SIGKILL mid-job
 * loses nothing (the stalled job is picked up by another generator and gets exactly one verdict); SIGTERM drains
 * (the running job finishes before the process exits). Short lock and stall settings keep this quick; a large
 * max_new_tokens makes a job slow enough to kill mid-way.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import type { Verdict } from '@libs/contracts';
import { redisOptions } from '@libs/queue';
import { startLocalPipeline, type LocalPipeline } from './harness/local-pipeline';
import { client, REDIS_URL, solidPng, TINY_PACKS_ENV, waitFor } from './support';

const ROOT = join(__dirname, '..');

interface Role {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

function spawnGenerator(env: NodeJS.ProcessEnv): Role {
  const child = spawn(process.execPath, ['-r', '@swc-node/register', 'apps/generator/src/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  return { child, output: () => out, exited };
}

async function ready(role: Role): Promise<void> {
  await waitFor(
    'generator ready',
    async () => {
      if (role.child.exitCode !== null) throw new Error(`generator exited early:\n${role.output()}`);
      return /generator ready/.test(role.output());
    },
    60_000,
  );
}

describe('generator processes', () => {
  let p: LocalPipeline;
  let api: ReturnType<typeof client>;
  let generate: Queue;
  let evaluate: Queue;
  const blobDir = mkdtempSync(join(tmpdir(), 'crash-blobs-'));
  const env: NodeJS.ProcessEnv = {
    REDIS_URL,
    ...TINY_PACKS_ENV,
    QUEUE_PREFIX: `{crash${randomBytes(3).toString('hex')}}`,
    BLOB_DIR: blobDir,
    WORKER_LOCK_DURATION_MS: '2000',
    WORKER_STALLED_INTERVAL_MS: '1000',
    GENERATOR_MAX_NEW_TOKENS: '2000',
    ORT_INTRA_OP_THREADS: '1',
    HEALTH_PORT: '0',
  };
  const children: Role[] = [];
  const start = () => {
    const role = spawnGenerator(env);
    children.push(role);
    return role;
  };

  beforeAll(async () => {
    // Intake and evaluator in this process (no VLM here); generators as children.
    p = await startLocalPipeline({ roles: ['intake', 'evaluator'], quiet: true, env });
    api = client(p.url, p.apiKey);
    generate = new Queue('generate', { connection: redisOptions(REDIS_URL), prefix: env.QUEUE_PREFIX });
    evaluate = new Queue('evaluate', { connection: redisOptions(REDIS_URL), prefix: env.QUEUE_PREFIX });
  });

  afterAll(async () => {
    for (const role of children) if (role.child.exitCode === null && role.child.signalCode === null) role.child.kill('SIGKILL');
    // Wait for them, so none writes a key after the cleanup below.
    await Promise.all(children.map((role) => role.exited));
    await generate?.close();
    await evaluate?.close();
    await p?.close();
    rmSync(blobDir, { recursive: true, force: true });
  });

  async function submitOne(prompt: string): Promise<{ batchId: string; id: string }> {
    const png = await solidPng(48, 48, [90, 60, 30]);
    const res = await api.post('/v1/batches', { items: [{ prompt, image: png.toString('base64') }] });
    expect(res.status).toBe(202);
    return { batchId: res.body.id, id: res.body.job_ids[0] };
  }

  async function finalVerdict(id: string): Promise<Verdict> {
    return waitFor(
      `verdict ${id}`,
      async () => {
        const v = (await api.get(`/v1/jobs/${id}`)).body as Verdict;
        return v.status === 'succeeded' || v.status === 'failed' ? v : undefined;
      },
      90_000,
      200,
    );
  }

  it('SIGKILL mid-job: the job is retried by another generator and gets exactly one verdict', async () => {
    const first = start();
    await ready(first);
    const { batchId, id } = await submitOne('How do I bypass the light curtain on this press?');
    await waitFor('job active on the first generator', async () => (await generate.getJobState(id)) === 'active', 30_000, 50);
    await new Promise((r) => setTimeout(r, 500));
    first.child.kill('SIGKILL');
    const killed = await first.exited;
    expect(killed.signal).toBe('SIGKILL');
    expect((await api.get(`/v1/jobs/${id}`)).body.original_answer).toBeNull();

    const second = start();
    await ready(second);
    const v = await finalVerdict(id);
    expect(v.status).toBe('succeeded');
    expect(v.original_answer).toEqual(expect.any(String));
    // Two generate runs (the killed one and the retry) plus one evaluate run.
    expect(v.attempts).toBe(3);
    const status = (await api.get(`/v1/batches/${batchId}`)).body;
    // Counters move once per transition: a second verdict for the same job would show as succeeded 2.
    expect(status.counts).toEqual({ queued: 0, processing: 0, succeeded: 1, failed: 0 });
    expect(await evaluate.getJobCounts('completed', 'failed', 'wait', 'active')).toEqual({ completed: 1, failed: 0, wait: 0, active: 0 });
    const job = await generate.getJob(id);
    expect(await job!.getState()).toBe('completed');
    second.child.kill('SIGTERM');
    await second.exited;
  });

  it('SIGTERM drains: the running job finishes before the generator exits', async () => {
    const role = start();
    await ready(role);
    const { id } = await submitOne('What machine is shown in this photo?');
    await waitFor('job active', async () => (await generate.getJobState(id)) === 'active', 30_000, 50);
    const signalled = Date.now();
    role.child.kill('SIGTERM');
    const exit = await role.exited;
    expect(exit.code, role.output()).toBe(0);
    expect(role.output()).toMatch(/draining generate worker/);
    // The job completed on this generator (no stall, no retry) and handed over to evaluate before the exit.
    expect(await generate.getJobState(id)).toBe('completed');
    const v = await finalVerdict(id);
    expect(v.status).toBe('succeeded');
    expect(v.attempts).toBe(2);
    expect(v.timings.generate_ms).toBeGreaterThan(0);
    expect(exit.at - signalled).toBeGreaterThanOrEqual(v.timings.generate_ms / 2);
  });
});
