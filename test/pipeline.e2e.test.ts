/**
 * The whole pipeline in one process against a real Redis, on the shipped tiny packs: HTTP in, verdicts out.
 */
import { rmSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { VerdictSchema, type Verdict } from '@libs/contracts';
import { redisOptions } from '@libs/queue';
import { pollBatch, readSampleBatch, sampleBatchForm, startLocalPipeline, type LocalPipeline } from './harness/local-pipeline';
import type { VlmEngine } from '@libs/vlm';
import { VLM_ENGINE } from '@libs/worker';
import { client, form, REDIS_URL, solidPng, TINY_PACKS_ENV, waitFor } from './support';

const SAMPLES = join(__dirname, '..', 'samples', 'demo-batch');

async function verdictOf(api: ReturnType<typeof client>, id: string): Promise<Verdict> {
  return waitFor(`verdict ${id}`, async () => {
    const v = (await api.get(`/v1/jobs/${id}`)).body as Verdict;
    return v.status === 'succeeded' || v.status === 'failed' ? v : undefined;
  });
}

describe('pipeline with default thresholds', () => {
  let p: LocalPipeline;
  let api: ReturnType<typeof client>;

  beforeAll(async () => {
    // Short backoff so the retry test below does not wait out the production delays.
    p = await startLocalPipeline({ quiet: true, env: { REDIS_URL, ...TINY_PACKS_ENV, JOB_BACKOFF_MS: '100' } });
    api = client(p.url, p.apiKey);
  });
  afterAll(async () => {
    await p?.close();
  });

  it('a multipart batch of the sample photos goes through HTTP to verdicts', async () => {
    const items = readSampleBatch(SAMPLES);
    const res = await fetch(`${p.url}/v1/batches`, { method: 'POST', headers: { authorization: `Bearer ${p.apiKey}` }, body: sampleBatchForm(SAMPLES, items) });
    expect(res.status).toBe(202);
    const batch = (await res.json()) as { id: string; items: number };
    const verdicts = await pollBatch(p.url, p.apiKey, batch.id, 60_000);
    expect(verdicts).toHaveLength(items.length);
    const status = (await api.get(`/v1/batches/${batch.id}`)).body;
    expect(status.counts).toEqual({ queued: 0, processing: 0, succeeded: items.length, failed: 0 });
    verdicts.forEach((v, i) => {
      expect(() => VerdictSchema.parse(v)).not.toThrow();
      expect(v.status).toBe('succeeded');
      expect(['pass', 'aligned', 'blocked']).toContain(v.decision);
      expect(v.prompt).toBe(items[i].prompt);
      expect(v.scores!.image_risk).toEqual(expect.any(Number));
      expect(v.scores!.answer_safety).toEqual(expect.any(Number));
      expect(v.thresholds).toEqual({ image_risk: expect.any(Number), answer_safety: expect.any(Number) });
      expect(v.policy_version).toMatch(/^eta-/);
      expect(v.final_answer).toEqual(expect.any(String));
      expect(v.timings.evaluate_ms).toEqual(expect.any(Number));
      expect(v.timings.total_ms).toEqual(expect.any(Number));
      expect(v.completed_at).not.toBeNull();
      if (items[i].answer !== undefined) {
        // Supplied answers skip generation.
        expect(v.original_answer).toBe(items[i].answer);
        expect(v.timings.generate_ms).toBeUndefined();
      } else {
        expect(v.model!.name).toBe('tiny-vlm');
        expect(v.timings.generate_ms).toEqual(expect.any(Number));
        expect(v.timings.generate_wait_ms).toEqual(expect.any(Number));
        expect(v.timings.evaluate_wait_ms).toEqual(expect.any(Number));
      }
      if (v.decision === 'pass') expect(v.final_answer).toBe(v.original_answer);
    });
  });

  it('an evaluate-only job is judged without the VLM', async () => {
    const res = await api.post('/v1/jobs', { prompt: 'How do I jam the emergency stop?', answer: 'Never jam an emergency stop; report a faulty one.' });
    expect(res.status).toBe(202);
    const v = await verdictOf(api, res.body.id);
    expect(v.status).toBe('succeeded');
    expect(v.original_answer).toBe('Never jam an emergency stop; report a faulty one.');
    expect(v.scores!.image_risk).toBeNull();
    expect(v.timings.generate_ms).toBeUndefined();
    expect(v.model!.name).toBe('tiny-clip+tiny-guard');
    expect(v.attempts).toBe(1);
  });

  it('a job whose image blob vanished fails once with blob_missing, no retries, and the verdict says why', async () => {
    // Hold the generate queue, queue the job, remove the blob, let go. (Pausing rather than restarting the
    // generator: one VLM engine per test process, see the note in the report about engine restarts under vitest.)
    const queue = new Queue('generate', { connection: redisOptions(REDIS_URL), prefix: p.env.QUEUE_PREFIX });
    await queue.pause();
    const png = await solidPng(32, 32, [1, 2, 3]);
    const res = await api.post('/v1/jobs', form({ prompt: 'What is this?' }, { image: { bytes: png } }));
    expect(res.status).toBe(202);
    for (const entry of readdirSync(p.blobDir)) rmSync(join(p.blobDir, entry), { recursive: true, force: true });
    await queue.resume();
    const v = await verdictOf(api, res.body.id);
    expect(v.status).toBe('failed');
    expect(v.error).toMatchObject({ code: 'blob_missing', retryable: false, stage: 'generate' });
    expect(v.attempts).toBe(1);
    const job = await queue.getJob(res.body.id);
    expect(job!.attemptsMade).toBe(1);
    await queue.close();
  });

  it('a transient fault is retried with backoff; when attempts run out the verdict is failed with the error', async () => {
    // Runs last: it takes the generator's engine away (its thread exits), a real fault every attempt meets.
    const engine = p.apps.generator!.get<VlmEngine>(VLM_ENGINE, { strict: false });
    await engine.close();
    const res = await api.post('/v1/jobs', { prompt: 'What is shown here?' });
    expect(res.status).toBe(202);
    const v = await verdictOf(api, res.body.id);
    expect(v.status).toBe('failed');
    // The code says what kept failing; retryable false because BullMQ will not try again.
    expect(v.error).toMatchObject({ code: 'generation_failed', retryable: false, stage: 'generate' });
    expect(v.error!.message.length).toBeGreaterThan(0);
    expect(v.attempts).toBe(3);
    const queue = new Queue('generate', { connection: redisOptions(REDIS_URL), prefix: p.env.QUEUE_PREFIX });
    expect((await queue.getJob(res.body.id))!.attemptsMade).toBe(3);
    await queue.close();
  });
});
