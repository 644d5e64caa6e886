/**
 * Revision profiles through the whole pipeline: a job picks a registered profile by name, its tenant must be
 * allowed to use it, the generator applies it and the verdict records which artifact steered the answer.
 * A tampered artifact stops the worker at start-up.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Verdict } from '@libs/contracts';
import { startLocalPipeline, type LocalPipeline } from './harness/local-pipeline';
import { REDIS_URL, TINY_PACKS_ENV, client, waitFor } from './support';

const PROFILES = resolve(__dirname, '../config/profiles.example.json');
const ARTIFACT_SHA = JSON.parse(readFileSync(PROFILES, 'utf8')).profiles[0].artifactSha256 as string;
const image = readFileSync(resolve(__dirname, '../models/tiny-vlm/reference/image.png')).toString('base64');

describe('revision profiles in the pipeline', () => {
  let p: LocalPipeline;
  let demo: ReturnType<typeof client>;
  let acme: ReturnType<typeof client>;
  const finished = (api: ReturnType<typeof client>, id: string) =>
    waitFor(`verdict ${id}`, async () => {
      const v = (await api.get(`/v1/jobs/${id}`)).body as Verdict;
      return v.status === 'succeeded' || v.status === 'failed' ? v : undefined;
    });

  beforeAll(async () => {
    p = await startLocalPipeline({ quiet: true, env: { REDIS_URL, ...TINY_PACKS_ENV, REVISION_PROFILES: PROFILES }, tenants: { acme: 'acme-key' } });
    demo = client(p.url, p.apiKey);
    acme = client(p.url, 'acme-key');
  });
  afterAll(async () => {
    await p?.close();
  });

  it('applies the chosen profile and records its artifact in the verdict', async () => {
    const prompt = 'What machine is shown here and is it safe to use?';
    const plain = await demo.post('/v1/jobs', { prompt, image });
    const steered = await demo.post('/v1/jobs', { prompt, image, profile: 'tiny-head-mms' });
    expect([plain.status, steered.status]).toEqual([202, 202]);
    const [a, b] = await Promise.all([finished(demo, plain.body.id), finished(demo, steered.body.id)]);
    expect(a.status).toBe('succeeded');
    expect(b.status).toBe('succeeded');
    expect(a.revision).toBeNull();
    expect(b.revision).toEqual({ profile: 'tiny-head-mms', artifact_sha256: ARTIFACT_SHA });
    // Same prompt, same image, greedy: only the steering vectors differ.
    expect(b.original_answer ?? b.final_answer).not.toBe(a.original_answer ?? a.final_answer);
  });

  it('refuses a profile the tenant may not use, at the door, and allows it for its tenant', async () => {
    const denied = await demo.post('/v1/jobs', { prompt: 'Is the guard closed?', profile: 'tiny-head-mms-one' });
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe('profile_not_allowed');
    const allowed = await acme.post('/v1/jobs', { prompt: 'Is the guard closed?', profile: 'tiny-head-mms-one' });
    expect(allowed.status).toBe(202);
    const v = await finished(acme, allowed.body.id);
    expect(v.revision?.profile).toBe('tiny-head-mms-one');
  });

  it('a tampered artifact stops the generator from starting', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'profiles-'));
    try {
      cpSync(resolve(__dirname, '../config'), dir, { recursive: true });
      const vectors = join(dir, 'profiles-artifacts/tiny-vlm-head-mms/vectors.bin');
      const bytes = readFileSync(vectors);
      bytes[0] ^= 0x01;
      writeFileSync(vectors, bytes);
      await expect(
        startLocalPipeline({ quiet: true, roles: ['generator'], env: { REDIS_URL, ...TINY_PACKS_ENV, REVISION_PROFILES: join(dir, 'profiles.example.json') } }),
      ).rejects.toThrow(/sha256|checksum/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
