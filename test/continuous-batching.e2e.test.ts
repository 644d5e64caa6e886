/**
 * The generator holds many BullMQ jobs at once and its engine decodes them as rows of shared batches: every job's
 * answer is the one the engine gives that job alone, and the decode steps carried several rows each.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Verdict } from '@libs/contracts';
import { LocalVlmEngine, type WorkerVlmEngine } from '@libs/vlm';
import { VLM_ENGINE } from '@libs/worker';
import { startLocalPipeline, type LocalPipeline } from './harness/local-pipeline';
import { client, REDIS_URL, solidPng, TINY_PACKS_ENV, waitFor } from './support';

describe('generate worker feeding the continuous-batching engine', () => {
  let p: LocalPipeline;
  let direct: LocalVlmEngine;
  beforeAll(async () => {
    p = await startLocalPipeline({
      quiet: true,
      roles: ['intake', 'generator', 'evaluator'],
      env: { REDIS_URL, ...TINY_PACKS_ENV, ETA_TAU_PRE: '1000', ETA_TAU_POST: '-1000' },
    });
    direct = await LocalVlmEngine.open({ packDir: TINY_PACKS_ENV.VLM_PACK_DIR });
  });
  afterAll(async () => {
    await p?.close();
    await direct?.close();
  });

  it('16 jobs at once: each verdict has its own unbatched answer, and decode steps carried many rows', async () => {
    const api = client(p.url, p.apiKey);
    const image = await solidPng(64, 48, [200, 40, 40]);
    const jobs = Array.from({ length: 16 }, (_, i) => ({ prompt: `Is the guard closed on press ${i}?`, image: i % 3 === 0 ? image : undefined }));
    const ids = await Promise.all(
      jobs.map(async (j) => {
        const res = await api.post('/v1/jobs', { prompt: j.prompt, ...(j.image ? { image: j.image.toString('base64') } : {}) });
        expect(res.status).toBe(202);
        return res.body.id as string;
      }),
    );
    const verdicts = await Promise.all(
      ids.map((id) =>
        waitFor(`verdict ${id}`, async () => {
          const v = (await api.get(`/v1/jobs/${id}`)).body as Verdict;
          return v.status === 'succeeded' || v.status === 'failed' ? v : undefined;
        }),
      ),
    );
    for (const [i, v] of verdicts.entries()) {
      expect(v.status).toBe('succeeded');
      const [alone] = await direct.generate([{ prompt: jobs[i].prompt, image: jobs[i].image }]);
      expect(v.original_answer, jobs[i].prompt).toBe(alone.text);
    }
    const stats = await p.apps.generator!.get<WorkerVlmEngine>(VLM_ENGINE, { strict: false }).schedulerStats();
    expect(stats.maxBatch).toBeGreaterThan(4);
    expect(stats.rowsStepped / stats.decodeSteps).toBeGreaterThan(2);
  });
});
