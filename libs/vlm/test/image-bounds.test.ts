/**
 * No accepted image costs the processors more than a fixed budget, whatever its shape: every resize is clamped
 * to MAX_RESIZE_EDGE (CLIP cuts the center out first, Idefics3 clamps its grid), images within the budget keep
 * Python's sizes, and decode failures come out typed, across the engine thread too.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, ModerationError } from '@libs/contracts';
import { MAX_RESIZE_EDGE } from '@libs/imaging';
import { ClipImageProcessor, Idefics3ImageProcessor, clipResizePlan, idefics3ResizePlan } from '../src/image-processor';
import { EngineError, engineErrorOf } from '../src/worker-engine';

const MODELS = join(__dirname, '..', '..', '..', 'models');
const preprocessor = (pack: string) => JSON.parse(readFileSync(join(MODELS, pack, 'preprocessor_config.json'), 'utf8'));
/** Limits that let any shape through the decode, so the processors' own clamps are what is tested. */
const ANY_SHAPE = { maxImagePixels: DEFAULT_LIMITS.maxImagePixels, maxImageAspectRatio: 1e9 };

async function gradient(width: number, height: number): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) raw.set([(255 * x) / width, (255 * y) / height, (x * 7 + y * 13) % 256], (y * width + x) * 3);
  return sharp(raw, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

describe('resize budgets', () => {
  it('CLIP: a 20:1 image keeps Python sizes; a 100000x1 strip resizes only its center, within the budget', () => {
    expect(clipResizePlan(1280, 64, 64)).toEqual({ width: 1280, height: 64 });
    expect(clipResizePlan(64, 1280, 64)).toEqual({ width: 64, height: 1280 });
    expect(clipResizePlan(640, 480, 224)).toEqual({ width: 299, height: 224 });
    // Unclamped: 6400000x64 (1.2 GB of RGB). Clamped: the central 64x1 source pixels, resized to 4096x64.
    const strip = clipResizePlan(100_000, 1, 64);
    expect(strip).toEqual({ region: { left: 49_968, top: 0, width: 64, height: 1 }, width: MAX_RESIZE_EDGE, height: 64 });
    const column = clipResizePlan(1, 100_000, 224);
    expect(column.width).toBe(224);
    expect(column.height).toBe(MAX_RESIZE_EDGE);
    expect(column.region!.height * 224).toBeLessThanOrEqual(MAX_RESIZE_EDGE + 224);
    // 20:1 at a 224 crop passes the budget too (4480 > 4096) and is clamped the same way.
    expect(Math.max(clipResizePlan(4000, 200, 224).width, clipResizePlan(4000, 200, 224).height)).toBeLessThanOrEqual(MAX_RESIZE_EDGE);
  });

  it('Idefics3: the grid of a sliver has at least one tile per side, and never passes the budget', () => {
    const split = { longestEdge: 128, tileEdge: 64, resize: true, split: true };
    // Python's sizes for ordinary images (compare image-splitting.test.ts against transformers.js).
    expect(idefics3ResizePlan(100, 60, split)).toEqual({ resized: { width: 128, height: 76 }, grid: { width: 128, height: 128 } });
    // Python's grid for 100000x1 is 128x0, which no resize can produce.
    expect(idefics3ResizePlan(100_000, 1, split)).toEqual({ resized: { width: 128, height: 1 }, grid: { width: 128, height: 64 } });
    // do_resize off: the grid would follow the source's long edge (100000 -> 100032 wide); clamped to whole tiles under the budget.
    const raw = idefics3ResizePlan(100_000, 3, { ...split, resize: false });
    expect(raw.grid!.width).toBeLessThanOrEqual(MAX_RESIZE_EDGE);
    expect(raw.grid!.width % 64).toBe(0);
    expect(raw.grid!.height).toBe(64);
    expect(idefics3ResizePlan(100_000, 1, { longestEdge: 64, tileEdge: 64, resize: true, split: false })).toEqual({ resized: { width: 64, height: 1 } });
  });

  it('the processors of the shipped packs handle a 20:1 image and, with the aspect limit off, a 100000x1 strip', async () => {
    const vlm = preprocessor('tiny-vlm');
    const clip = new ClipImageProcessor(preprocessor('tiny-clip'), ANY_SHAPE);
    const idefics = new Idefics3ImageProcessor(vlm, ANY_SHAPE);
    const splitting = new Idefics3ImageProcessor({ ...vlm, do_image_splitting: true, size: { longest_edge: 128 } }, ANY_SHAPE);
    for (const [width, height] of [
      [1280, 64],
      [64, 1280],
      [100_000, 1],
      [1, 100_000],
    ]) {
      const png = await gradient(width, height);
      expect(clip.plan(width, height)!.width).toBeLessThanOrEqual(MAX_RESIZE_EDGE);
      expect(clip.plan(width, height)!.height).toBeLessThanOrEqual(MAX_RESIZE_EDGE);
      expect((await clip.process(png)).length).toBe(3 * 64 * 64);
      const frames = await idefics.process(png);
      expect(frames.frames.map((f) => f.length)).toEqual([3 * 64 * 64]);
      const plan = splitting.plan(width, height);
      expect(plan.grid!.width * plan.grid!.height).toBeLessThanOrEqual(MAX_RESIZE_EDGE ** 2);
      const tiles = await splitting.process(png);
      expect(tiles.rows * tiles.cols + 1).toBe(tiles.frames.length);
      expect(tiles.frames.every((f) => f.length === 3 * 64 * 64)).toBe(true);
    }
  });

  it('CLIP: cutting the center out first gives the pixels resize-then-crop gives', async () => {
    // 300x4 at shortest edge 64 would resize to 4800x64, past the budget: the clamped path runs.
    const [width, height] = [300, 4];
    const png = await gradient(width, height);
    const config = preprocessor('tiny-clip');
    expect(clipResizePlan(width, height, 64).region).toBeDefined();
    const ours = await new ClipImageProcessor(config, ANY_SHAPE).process(png);
    // The unclamped reference: the whole image resized (bicubic, as resample 3 maps), then the center 64x64.
    const full = await sharp(png).removeAlpha().resize(4800, 64, { fit: 'fill', kernel: 'cubic' }).raw().toBuffer();
    const left = Math.round((4800 - 64) / 2);
    const mean = [0.48145466, 0.4578275, 0.40821073];
    const std = [0.26862954, 0.26130258, 0.27577711];
    let worst = 0;
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 64; y++) {
        for (let x = 0; x < 64; x++) {
          const ref = (full[(y * 4800 + left + x) * 3 + c] / 255 - mean[c]) / std[c];
          worst = Math.max(worst, Math.abs(ours[c * 64 * 64 + y * 64 + x] - ref));
        }
      }
    }
    // Within a couple of uint8 levels (normalized: 1/255/std is about 0.015 per level).
    expect(worst).toBeLessThan(0.05);
  });

  it('with the default limits both processors refuse the strip as the door does: image_aspect_ratio', async () => {
    const png = await gradient(100_000, 1);
    for (const p of [new ClipImageProcessor(preprocessor('tiny-clip')), new Idefics3ImageProcessor(preprocessor('tiny-vlm'))]) {
      const err = await p.process(png).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ModerationError);
      expect((err as ModerationError).code).toBe('image_aspect_ratio');
    }
  });
});

describe('errors across the engine thread', () => {
  it('a ModerationError comes back as one, code and details included; anything else as an EngineError', () => {
    const bad = engineErrorOf({ name: 'ModerationError', code: 'image_undecodable', message: 'image could not be decoded: x', details: { a: 1 } });
    expect(bad).toBeInstanceOf(ModerationError);
    expect(bad).toMatchObject({ code: 'image_undecodable', message: 'image could not be decoded: x', details: { a: 1 }, retryable: false });
    const fault = engineErrorOf({ name: 'Error', message: 'onnxruntime: out of memory' });
    expect(fault).toBeInstanceOf(EngineError);
    expect(fault).not.toBeInstanceOf(ModerationError);
    // A code the system does not know stays an EngineError.
    expect(engineErrorOf({ name: 'ModerationError', code: 'no_such_code', message: 'm' })).toBeInstanceOf(EngineError);
  });
});
