/** The evaluator's jobs share CLIP and reward calls: concurrent one-job calls become one batched model call. */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coalescedClip, CallCoalescer } from '@libs/safety';
import { openClip, type ClipEmbedder } from '@libs/vlm';

const ROOT = resolve(__dirname, '../../..');
const images = ['press-guard-open.png', 'saw-guarded.png', 'conveyor-boxes.png', 'lathe-operator.png'].map((f) =>
  readFileSync(join(ROOT, 'samples', 'demo-batch', f)),
);

describe('CallCoalescer on the tiny CLIP pack', () => {
  let clip: ClipEmbedder;
  beforeAll(async () => {
    clip = await openClip(join(ROOT, 'models', 'tiny-clip'));
  });
  afterAll(() => clip.close());

  it('concurrent calls run as one model call and get the embeddings they get alone', async () => {
    const calls: number[] = [];
    const counted: ClipEmbedder = { ...clip, embedImages: (xs) => (calls.push(xs.length), clip.embedImages(xs)) };
    const shared = coalescedClip(counted);
    const together = await Promise.all(images.map((img) => shared.embedImages([img])));
    expect(calls).toEqual([images.length]);
    for (const [i, img] of images.entries()) {
      const [alone] = await clip.embedImages([img]);
      for (let k = 0; k < alone.length; k++) expect(Math.abs(together[i][0][k] - alone[k])).toBeLessThan(1e-4);
    }
  });

  it('a bad input fails only its own call', async () => {
    const shared = coalescedClip(clip);
    const results = await Promise.allSettled([
      shared.embedImages([images[0]]),
      shared.embedImages([new Uint8Array([1, 2, 3])]),
      shared.embedImages([images[1]]),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  });

  it('holds at most maxBatch inputs per call', async () => {
    const sizes: number[] = [];
    const c = new CallCoalescer<number, number>(async (xs) => (sizes.push(xs.length), xs.map((x) => x * 2)), 3);
    expect(await Promise.all([1, 2, 3, 4, 5].map((x) => c.call([x])))).toEqual([[2], [4], [6], [8], [10]]);
    expect(sizes).toEqual([3, 2]);
  });
});
