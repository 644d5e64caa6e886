/**
 * Images the door and the workers must judge alike, against a real Redis, real sharp and the shipped tiny packs:
 * corrupt or truncated files are refused at the door and by the workers' own decode with the same code, extreme
 * aspect ratios are refused at the door, and an undecodable image that gets past the door (decode check off)
 * fails its job once, as bad data, instead of being retried as a transient fault.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModerationError, type Verdict } from '@libs/contracts';
import { ClipImageProcessor, Idefics3ImageProcessor } from '@libs/vlm';
import { startLocalPipeline, type LocalPipeline } from './harness/local-pipeline';
import { client, form, REDIS_URL, solidPng, TINY_PACKS_ENV, waitFor } from './support';

const ROOT = join(__dirname, '..');
const preprocessor = (pack: string) => JSON.parse(readFileSync(join(ROOT, pack, 'preprocessor_config.json'), 'utf8'));

/** Pixels that do not compress, so a cut or an overwrite lands in the middle of real entropy-coded data. */
function noise(width: number, height: number): Buffer {
  const raw = Buffer.alloc(width * height * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 2654435761) >>> 24;
  return raw;
}

interface BadImages {
  truncatedPng: Buffer;
  truncatedJpeg: Buffer;
  /** A JPEG whose scan data is overwritten: libjpeg only warns ("bad Huffman code"), so `failOn: 'error'` let it in. */
  corruptJpeg: Buffer;
}

async function badImages(): Promise<BadImages> {
  const raw = { raw: { width: 64, height: 48, channels: 3 as const } };
  const png = await sharp(noise(64, 48), raw).png().toBuffer();
  const jpeg = await sharp(noise(64, 48), raw).jpeg().toBuffer();
  const corruptJpeg = Buffer.from(jpeg);
  const mid = Math.floor(jpeg.length / 2);
  corruptJpeg.fill(0x00, mid, mid + 40);
  return { truncatedPng: png.subarray(0, png.length - 30), truncatedJpeg: jpeg.subarray(0, Math.floor(jpeg.length * 0.6)), corruptJpeg };
}

async function verdictOf(api: ReturnType<typeof client>, id: string): Promise<Verdict> {
  return waitFor(`verdict ${id}`, async () => {
    const v = (await api.get(`/v1/jobs/${id}`)).body as Verdict;
    return v.status === 'succeeded' || v.status === 'failed' ? v : undefined;
  });
}

describe('the door and the workers decode alike', () => {
  let p: LocalPipeline;
  let api: ReturnType<typeof client>;
  let bad: BadImages;

  beforeAll(async () => {
    // No workers: what the door accepts stays queued and is removed with the prefix.
    p = await startLocalPipeline({ roles: ['intake'], quiet: true, env: { REDIS_URL } });
    api = client(p.url, p.apiKey);
    bad = await badImages();
  });
  afterAll(async () => {
    await p?.close();
  });

  it.each(['truncatedPng', 'truncatedJpeg', 'corruptJpeg'] as const)(
    '%s: 422 image_undecodable at the door, and the same code from both processors',
    async (name) => {
      const bytes = bad[name];
      const res = await api.post('/v1/jobs', form({ prompt: 'What is shown?' }, { image: { bytes, type: name.endsWith('Png') ? 'image/png' : 'image/jpeg' } }));
      expect(res.status).toBe(422);
      expect(res.body.error.code).toBe('image_undecodable');
      // The workers' decode refuses the same bytes with the same typed error (no message for anyone to parse).
      for (const processor of [new Idefics3ImageProcessor(preprocessor('models/tiny-vlm')), new ClipImageProcessor(preprocessor('models/tiny-clip'))]) {
        const err = await processor.process(bytes).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(ModerationError);
        expect((err as ModerationError).code).toBe('image_undecodable');
      }
    },
  );

  it('a 100000x1 PNG (a kilobyte, few pixels) is refused with image_aspect_ratio; 20:1 is accepted', async () => {
    const strip = await solidPng(100_000, 1);
    expect(strip.length).toBeLessThan(2048);
    const res = await api.post('/v1/jobs', form({ prompt: 'What is shown?' }, { image: { bytes: strip } }));
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe('image_aspect_ratio');
    expect(res.body.error.details).toMatchObject({ limit: 20, width: 100_000, height: 1 });
    const tall = await api.post('/v1/jobs', form({ prompt: 'What is shown?' }, { image: { bytes: await solidPng(10, 201) } }));
    expect(tall.status).toBe(422);
    expect(tall.body.error.code).toBe('image_aspect_ratio');
    const ok = await api.post('/v1/jobs', form({ prompt: 'What is shown?' }, { image: { bytes: await solidPng(400, 20) } }));
    expect(ok.status).toBe(202);
  });
});

describe('an undecodable image past the door fails its job once, as bad data', () => {
  let p: LocalPipeline;
  let api: ReturnType<typeof client>;
  let bad: BadImages;

  beforeAll(async () => {
    // Decode check off: only the header is read at the door, so the truncated files reach the workers.
    // Short backoff: were the failure taken for a transient one, the three attempts would not take long to show.
    p = await startLocalPipeline({
      roles: ['intake', 'generator', 'evaluator'],
      quiet: true,
      env: { REDIS_URL, ...TINY_PACKS_ENV, INTAKE_DECODE_CHECK: 'false', JOB_BACKOFF_MS: '100' },
    });
    api = client(p.url, p.apiKey);
    bad = await badImages();
  });
  afterAll(async () => {
    await p?.close();
  });

  it('a truncated PNG reaching the generator (VLM on its engine thread): one attempt, image_undecodable', async () => {
    const res = await api.post('/v1/jobs', form({ prompt: 'What is shown?' }, { image: { bytes: bad.truncatedPng } }));
    expect(res.status).toBe(202);
    const v = await verdictOf(api, res.body.id);
    expect(v.status).toBe('failed');
    expect(v.error).toMatchObject({ code: 'image_undecodable', retryable: false, stage: 'generate' });
    expect(v.error!.message).not.toMatch(/^image_undecodable:/);
    expect(v.attempts).toBe(1);
  });

  it('a truncated PNG with a supplied answer reaching the evaluator (CLIP in process): one attempt, image_undecodable', async () => {
    const res = await api.post('/v1/jobs', form({ prompt: 'What is shown?', answer: 'A press.' }, { image: { bytes: bad.truncatedPng } }));
    expect(res.status).toBe(202);
    const v = await verdictOf(api, res.body.id);
    expect(v.status).toBe('failed');
    expect(v.error).toMatchObject({ code: 'image_undecodable', retryable: false, stage: 'evaluate' });
    expect(v.attempts).toBe(1);
  });
});
