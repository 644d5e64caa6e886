/**
 * Real SmolVLM packs split large images into max_image_size tiles plus a global frame (do_image_splitting).
 * The tiny pack does not, so this checks that path against transformers.js's Idefics3 processor on a copy of
 * the pack configured to split: the same prompt ids (tile row/col tokens and all) and the same frames.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VlmProcessor, loadVlmPack } from '@libs/vlm';
import { TINY_VLM } from './golden';

describe('image splitting (do_image_splitting)', () => {
  let packDir: string;
  beforeAll(() => {
    packDir = join(mkdtempSync(join(tmpdir(), 'split-pack-')), 'tiny-vlm-split');
    cpSync(TINY_VLM, packDir, { recursive: true });
    const pre = JSON.parse(readFileSync(join(packDir, 'preprocessor_config.json'), 'utf8'));
    writeFileSync(join(packDir, 'preprocessor_config.json'), JSON.stringify({ ...pre, do_image_splitting: true, size: { longest_edge: 128 } }));
  });
  afterAll(() => rmSync(dirname(packDir), { recursive: true, force: true }));

  it.each([
    [100, 60],
    [64, 150],
    [40, 40],
  ])('a %ix%i image gives the same ids and frames as transformers.js', async (width, height) => {
    // A smooth gradient, so different resampling kernels give nearly the same pixels.
    const raw = Buffer.alloc(width * height * 3);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) raw.set([(255 * x) / width, (255 * y) / height, 128], (y * width + x) * 3);
    const png = await sharp(raw, { raw: { width, height, channels: 3 } })
      .png()
      .toBuffer();
    const prompt = 'Is the guard open?';

    const ours = await new VlmProcessor(loadVlmPack(packDir)).encode({ prompt, image: png });

    const hf = await import('@huggingface/transformers');
    hf.env.allowRemoteModels = false;
    hf.env.localModelPath = dirname(packDir) + '/';
    const processor = await hf.AutoProcessor.from_pretrained(basename(packDir), { local_files_only: true });
    const text = processor.apply_chat_template([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: prompt }] }], {
      add_generation_prompt: true,
    });
    const theirs = await processor(text, [await hf.RawImage.fromBlob(new Blob([png]))]);

    expect(ours.inputIds).toEqual(Array.from(theirs.input_ids.data as BigInt64Array, Number));
    const [, frames, , h, w] = theirs.pixel_values.dims as number[];
    expect(ours.pixels!.frames).toHaveLength(frames);
    expect([ours.pixels!.height, ours.pixels!.width]).toEqual([h, w]);
    // Resampling differs (sharp on uint8 here, bilinear on floats there; ~8/255 when upscaling 3x), so compare
    // loosely: a tile in the wrong place or order on this gradient is off by ~0.5.
    const data = theirs.pixel_values.data as Float32Array;
    const plane = 3 * h * w;
    ours.pixels!.frames.forEach((f, i) => {
      let diff = 0;
      for (let k = 0; k < plane; k++) diff += Math.abs(f[k] - data[i * plane + k]);
      expect(diff / plane, `frame ${i}`).toBeLessThan(0.1);
    });
  });
});

describe('chat template location', () => {
  it('is read from chat_template.json when tokenizer_config.json has none', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'tpl-pack-')), 'pack');
    try {
      cpSync(TINY_VLM, dir, { recursive: true });
      const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
      const { chat_template, ...rest } = config;
      writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(rest));
      writeFileSync(join(dir, 'chat_template.json'), JSON.stringify({ chat_template }));
      const processor = new VlmProcessor(loadVlmPack(dir));
      expect(processor.templatedPrompt({ prompt: 'Is the guard open?' })).toBe(
        new VlmProcessor(loadVlmPack(TINY_VLM)).templatedPrompt({ prompt: 'Is the guard open?' }),
      );
    } finally {
      rmSync(dirname(dir), { recursive: true, force: true });
    }
  });
});
