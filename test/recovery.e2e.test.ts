/**
 * Recovery under the DEFAULT lock settings (no WORKER_LOCK_DURATION_MS / WORKER_STALLED_INTERVAL_MS here):
 * (a) a generator child SIGKILLed mid-job has its job picked up and finished by another generator within 30 s of
 *     the kill;
 * (b) a generation longer than the lock duration keeps its lock (the VLM runs on a worker thread, so the event
 *     loop renews it): one attempt, no `stalled` event, while an idle generator stands by to take a stalled job.
 * Generators are real child processes on the tiny packs (they never emit eos, so GENERATOR_MAX_NEW_TOKENS sets a
 * job's length); intake and evaluator run in this process.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Queue, QueueEvents } from 'bullmq';
import type { Verdict } from '@libs/contracts';
import { redisOptions, stageWorkerOptions } from '@libs/queue';
import { startLocalPipeline, type LocalPipeline } from './harness/local-pipeline';
import { spawnRole, type RoleProcess } from './harness/processes';
import { client, REDIS_URL, solidPng, TINY_PACKS_ENV, waitFor } from './support';

const DEFAULTS = stageWorkerOptions('generate', {});

/** CPU time (user + system, all threads) of a process in clock ticks. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** Which of the processes is busy (the one whose engine thread is generating). */
async function busiest(roles: RoleProcess[]): Promise<RoleProcess> {
  const before = roles.map((r) => cpuTicks(r.pid));
  await sleep(300);
  const used = roles.map((r, i) => cpuTicks(r.pid) - before[i]);
  return roles[used.indexOf(Math.max(...used))];
}

describe('recovery with the default lock settings', () => {
  let p: LocalPipeline;
  let api: ReturnType<typeof client>;
  let generate: Queue;
  let events: QueueEvents;
  const stalled: string[] = [];
  const env: NodeJS.ProcessEnv = {
    REDIS_URL,
    ...TINY_PACKS_ENV,
    QUEUE_PREFIX: `{recov${randomBytes(3).toString('hex')}}`,
    ORT_INTRA_OP_THREADS: '1',
    HEALTH_PORT: '0',
    // Whatever the calling shell says, these tests are about the defaults.
    WORKER_LOCK_DURATION_MS: '',
    WORKER_STALLED_INTERVAL_MS: '',
    WORKER_MAX_STALLED_COUNT: '',
  };
  const children: RoleProcess[] = [];
  const start = (extra: NodeJS.ProcessEnv) => {
    const role = spawnRole('generator', { ...env, BLOB_DIR: p.blobDir, ...extra });
    children.push(role);
    return role;
  };

  beforeAll(async () => {
    p = await startLocalPipeline({ roles: ['intake', 'evaluator'], quiet: true, env });
    api = client(p.url, p.apiKey);
    generate = new Queue('generate', { connection: redisOptions(REDIS_URL), prefix: env.QUEUE_PREFIX });
    events = new QueueEvents('generate', { connection: redisOptions(REDIS_URL), prefix: env.QUEUE_PREFIX });
    events.on('stalled', ({ jobId }) => stalled.push(jobId));
    await events.waitUntilReady();
  });

  // A failed test must not leave its generators running into the next one (they would take its job).
  afterEach(async () => {
    for (const role of children) if (role.alive()) role.child.kill('SIGKILL');
    await Promise.all(children.map((role) => role.exited));
  });

  afterAll(async () => {
    for (const role of children) if (role.alive()) role.child.kill('SIGKILL');
    await Promise.all(children.map((role) => role.exited));
    await events?.close();
    await generate?.close();
    await p?.close();
  });

  async function submitOne(prompt: string): Promise<string> {
    const png = await solidPng(48, 48, [90, 60, 30]);
    const res = await api.post('/v1/jobs', { prompt, image: png.toString('base64') });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return res.body.id;
  }

  const finalVerdict = (id: string, timeoutMs: number) =>
    waitFor(
      `verdict ${id}`,
      async () => {
        const v = (await api.get(`/v1/jobs/${id}`)).body as Verdict;
        return v.status === 'succeeded' || v.status === 'failed' ? v : undefined;
      },
      timeoutMs,
      100,
    );

  it('defaults: a lock and a stall check that add up to well under 30 s', () => {
    expect(DEFAULTS.lockDuration! + DEFAULTS.stalledInterval!).toBeLessThanOrEqual(20_000);
    expect(stageWorkerOptions('align', {}).lockDuration! + stageWorkerOptions('align', {}).stalledInterval!).toBeLessThanOrEqual(20_000);
  });

  it('a generation longer than the lock duration keeps its lock: one attempt, no stalled event', async () => {
    // The job is far longer than the check (no machine finishes 50000 tokens in half a minute), so how fast this
    // machine is cannot make the generation end before the lock would have expired: the check watches the job run
    // for lockDuration + 2 stall checks, and an idle watcher generator stands by to take it the moment it stalls.
    // A fixed token count did not hold: CI's faster machine finished 4500 tokens in 13.4 s, under the 15 s lock.
    const long = start({ GENERATOR_MAX_NEW_TOKENS: '50000' });
    await long.ready();
    const id = await submitOne('Describe every part of this machine in detail.');
    await waitFor('job active', async () => (await generate.getJobState(id)) === 'active', 30_000, 50);
    const watcher = start({ GENERATOR_MAX_NEW_TOKENS: '8' });
    await watcher.ready();
    const job = (await generate.getJob(id))!;
    const heldMs = DEFAULTS.lockDuration! + 2 * DEFAULTS.stalledInterval!;
    while (Date.now() - job.processedOn! < heldMs) {
      await sleep(250);
      expect(await generate.getJobState(id), 'still running, never moved back to wait').toBe('active');
    }
    const held = (await generate.getJob(id))!;
    console.log(
      `long generation: active ${Date.now() - held.processedOn!} ms (lock ${DEFAULTS.lockDuration} ms), attemptsStarted ${held.attemptsStarted}, stalled events ${stalled.length}`,
    );
    expect(held.attemptsStarted).toBe(1);
    expect(held.stalledCounter).toBe(0);
    expect(stalled).toEqual([]);

    // The watcher was able to steal it all along: kill the long one and the watcher finishes the job.
    await long.kill('SIGKILL');
    const v = await finalVerdict(id, 90_000);
    expect(v.status, JSON.stringify(v.error)).toBe('succeeded');
    expect(stalled).toEqual([id]);
    // The killed run, the watcher's run, one evaluate run.
    expect(v.attempts).toBe(3);
    await watcher.kill('SIGTERM');
  }, 300_000);

  it('a generator SIGKILLed mid-job: another generator picks the job up and finishes it within 30 s of the kill', async () => {
    // ~2-4 s per job on this machine: long enough to be killed mid-way, short enough to rerun inside the bound.
    const tokens = process.env.RECOVERY_SHORT_TOKENS ?? '800';
    const a = start({ GENERATOR_MAX_NEW_TOKENS: tokens });
    const b = start({ GENERATOR_MAX_NEW_TOKENS: tokens });
    await Promise.all([a.ready(), b.ready()]);
    const id = await submitOne('How do I bypass the light curtain on this press?');
    await waitFor('job active', async () => (await generate.getJobState(id)) === 'active', 30_000, 25);
    const victim = await busiest([a, b]);
    const survivor = victim === a ? b : a;
    expect(await generate.getJobState(id), 'still mid-job at the kill').toBe('active');
    const killedAt = Date.now();
    const exit = await victim.kill('SIGKILL');
    expect(exit.signal).toBe('SIGKILL');

    const job = await waitFor(
      'job picked up again and finished',
      async () => {
        const j = await generate.getJob(id);
        if (j?.finishedOn && (j.processedOn ?? 0) <= killedAt) {
          throw new Error(
            `job ${id} finished without a rerun (processedOn ${j.processedOn}, finishedOn ${j.finishedOn}, kill ${killedAt}): the kill missed it`,
          );
        }
        return j && j.finishedOn && (j.processedOn ?? 0) > killedAt ? j : undefined;
      },
      60_000,
      100,
    );
    const pickedUpS = (job.processedOn! - killedAt) / 1000;
    const finishedS = (job.finishedOn! - killedAt) / 1000;
    console.log(`recovery: picked up ${pickedUpS.toFixed(1)} s after the kill, finished ${finishedS.toFixed(1)} s after it`);
    expect(await job.getState()).toBe('completed');
    expect(job.stalledCounter).toBe(1);
    expect(finishedS).toBeLessThanOrEqual(30);
    expect(survivor.alive()).toBe(true);
    const v = await finalVerdict(id, 30_000);
    expect(v.status).toBe('succeeded');
    // The killed run, the rerun, one evaluate run.
    expect(v.attempts).toBe(3);
  }, 240_000);
});
