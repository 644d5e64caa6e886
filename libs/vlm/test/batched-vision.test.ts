/**
 * One vision-encoder call per prefill (issue 15): the images of a batch are stacked into one call, and each prompt
 * gets exactly the features its own call gives. The reference is the pack's vision encoder run by onnxruntime
 * directly, one image per call, outside the code under test.
 */
import { join } from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { LocalVlmEngine, VlmModel } from '@libs/vlm';
import { seededRandom } from '@libs/onnx-graph';
import { TINY_VLM, goldenImage } from './golden';

/** Frames of `count` random [3, 64, 64] planes: an image split into tiles has several, a plain one has one. */
function frames(count: number, seed: number) {
  const rand = seededRandom(seed);
  return { frames: Array.from({ length: count }, () => Float32Array.from({ length: 3 * 64 * 64 }, () => rand(1))), height: 64, width: 64, rows: 0, cols: 0 };
}

async function gradient(width: number, height: number, seed: number): Promise<Uint8Array> {
  const data = Buffer.alloc(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * seed + (i % width) * 3) % 256;
  return sharp(data, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

describe('batched vision encoder', () => {
  let model: VlmModel;
  let vision: InferenceSession;
  beforeAll(async () => {
    model = await VlmModel.open(TINY_VLM);
    vision = await InferenceSession.create(join(TINY_VLM, 'onnx', 'vision_encoder.onnx'));
  });
  afterAll(async () => {
    await model.release();
    await vision.release();
  });

  it('gives each image, of one frame or several, the features of its own encoder call', async () => {
    const images = [frames(1, 1), frames(3, 2), frames(1, 3), frames(2, 4)];
    const batched = await model.encodeImages(images);
    for (const [i, img] of images.entries()) {
      const n = img.frames.length;
      const data = new Float32Array(n * 3 * 64 * 64);
      img.frames.forEach((f, k) => data.set(f, k * f.length));
      const out = await vision.run({
        pixel_values: new Tensor('float32', data, [1, n, 3, 64, 64]),
        pixel_attention_mask: new Tensor('bool', new Uint8Array(n * 64 * 64).fill(1), [1, n, 64, 64]),
      });
      const reference = out.image_features.data as Float32Array;
      expect(batched[i].length, `image ${i}`).toBe(reference.length);
      let worst = 0;
      for (let k = 0; k < reference.length; k++) worst = Math.max(worst, Math.abs(batched[i][k] - reference[k]));
      expect(worst, `image ${i}`).toBeLessThan(1e-5);
    }
  });

  it('a generate call of several image prompts runs the encoder once, and each row decodes what it decodes alone', async () => {
    const engine = await LocalVlmEngine.open({ packDir: TINY_VLM });
    try {
      const images = [goldenImage(), await gradient(80, 40, 7), await gradient(33, 90, 11), await gradient(64, 64, 5)];
      const requests = images.map((image, i) => ({ prompt: `Describe picture ${i}.`, image, maxNewTokens: 8, ignoreEos: true }));
      const alone = [];
      for (const r of requests) alone.push((await engine.generate([r]))[0].tokens);
      const runtimeModel = (engine as unknown as { model: VlmModel }).model;
      const calls = vi.spyOn(runtimeModel, 'encodeImages');
      const together = await engine.generate(requests);
      expect(calls).toHaveBeenCalledTimes(1);
      expect(calls.mock.calls[0][0]).toHaveLength(4);
      expect(together.map((r) => r.tokens)).toEqual(alone);
    } finally {
      await engine.close();
    }
  });
});
