/**
 * The one decode, on real sharp: the door's checks and the workers' decode accept and refuse the same bytes,
 * with the same typed errors.
 */
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, ModerationError } from '@libs/contracts';
import { decodeLimitsFromEnv, decodeRgb, inspectImage, WHOLE_DECODE_MAX_PIXELS } from '@libs/imaging';

function noise(width: number, height: number): Buffer {
  const raw = Buffer.alloc(width * height * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 2654435761) >>> 24;
  return raw;
}

const raw = (width: number, height: number) => ({ raw: { width, height, channels: 3 as const } });

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (err === undefined) return undefined;
  expect(err).toBeInstanceOf(ModerationError);
  return (err as ModerationError).code;
}

describe('imaging', () => {
  it('door and workers agree on every kind of bad file', async () => {
    const png = await sharp(noise(64, 48), raw(64, 48)).png().toBuffer();
    const jpeg = await sharp(noise(64, 48), raw(64, 48)).jpeg().toBuffer();
    const corrupt = Buffer.from(jpeg);
    corrupt.fill(0, jpeg.length >> 1, (jpeg.length >> 1) + 40);
    // Over WHOLE_DECODE_MAX_PIXELS the door's check streams into a thumbnail instead of decoding whole: both paths.
    const side = { width: 1100, height: 1000 };
    expect(side.width * side.height).toBeGreaterThan(WHOLE_DECODE_MAX_PIXELS);
    const bigJpeg = await sharp(noise(side.width, side.height), raw(side.width, side.height)).jpeg().toBuffer();
    const bigPng = await sharp(noise(side.width, side.height), raw(side.width, side.height)).png({ compressionLevel: 1 }).toBuffer();
    const cases: [string, Uint8Array, string | undefined][] = [
      ['good PNG', png, undefined],
      ['good JPEG', jpeg, undefined],
      ['truncated PNG', png.subarray(0, png.length - 30), 'image_undecodable'],
      ['truncated JPEG', jpeg.subarray(0, Math.floor(jpeg.length * 0.6)), 'image_undecodable'],
      ['JPEG with a bad Huffman code (a libjpeg warning)', corrupt, 'image_undecodable'],
      ['large good JPEG', bigJpeg, undefined],
      ['large truncated PNG', bigPng.subarray(0, bigPng.length - 30), 'image_undecodable'],
      ['large truncated JPEG', bigJpeg.subarray(0, Math.floor(bigJpeg.length * 0.6)), 'image_undecodable'],
      [
        '100000x1',
        await sharp({ create: { width: 100_000, height: 1, channels: 3, background: '#808080' } })
          .png()
          .toBuffer(),
        'image_aspect_ratio',
      ],
      [
        '6000x5000',
        await sharp({ create: { width: 6000, height: 5000, channels: 3, background: '#808080' } })
          .png()
          .toBuffer(),
        'image_too_many_pixels',
      ],
    ];
    for (const [name, bytes, code] of cases) {
      expect(await codeOf(inspectImage(bytes, DEFAULT_LIMITS, true)), `door: ${name}`).toBe(code);
      expect(await codeOf(decodeRgb(bytes, DEFAULT_LIMITS)), `workers: ${name}`).toBe(code);
    }
  });

  it('the aspect ratio limit is inclusive and applies both ways; the header checks run without the decode check', async () => {
    const solid = (w: number, h: number) =>
      sharp({ create: { width: w, height: h, channels: 3, background: '#808080' } })
        .png()
        .toBuffer();
    const limits = { ...DEFAULT_LIMITS, maxImageAspectRatio: 4 };
    expect(await codeOf(inspectImage(await solid(400, 100), limits, false))).toBeUndefined();
    expect(await codeOf(inspectImage(await solid(401, 100), limits, false))).toBe('image_aspect_ratio');
    expect(await codeOf(inspectImage(await solid(100, 401), limits, false))).toBe('image_aspect_ratio');
    const err = (await inspectImage(await solid(100, 401), limits, false).catch((e) => e)) as ModerationError;
    expect(err.details).toEqual({ limit: 4, width: 100, height: 401 });
    expect(err.status).toBe(422);
  });

  it('decodeRgb gives sRGB without alpha, as the processors expect', async () => {
    const rgba = await sharp({ create: { width: 3, height: 2, channels: 4, background: { r: 10, g: 20, b: 30, alpha: 0.5 } } })
      .png()
      .toBuffer();
    const image = await decodeRgb(rgba, DEFAULT_LIMITS);
    expect([image.width, image.height, image.data.length]).toEqual([3, 2, 18]);
    expect([...image.data.subarray(0, 3)]).toEqual([10, 20, 30]);
  });

  it('workers read the door settings from the same env names', () => {
    expect(decodeLimitsFromEnv({})).toEqual({ maxImagePixels: DEFAULT_LIMITS.maxImagePixels, maxImageAspectRatio: DEFAULT_LIMITS.maxImageAspectRatio });
    expect(decodeLimitsFromEnv({ INTAKE_MAX_IMAGE_PIXELS: '1000', INTAKE_MAX_IMAGE_ASPECT_RATIO: '3' })).toEqual({
      maxImagePixels: 1000,
      maxImageAspectRatio: 3,
    });
  });
});
