/**
 * The one place an uploaded image is decoded: the intake door (`inspectImage`) and the workers' processors
 * (`decodeRgb`) run the same checks with the same sharp options, so whatever the door accepts the workers can
 * decode, and whatever a worker would refuse the door refuses first. Sharp only; no model code here.
 */
import sharp, { type SharpOptions } from 'sharp';
import { limitsFromEnv, ModerationError, type ImageFormat, type Limits } from '@libs/contracts';

/** The limits a decode needs; intake passes its whole `Limits`, workers `decodeLimitsFromEnv()`. */
export type DecodeLimits = Pick<Limits, 'maxImagePixels' | 'maxImageAspectRatio'>;

/** Inspection adds the checks that need no pixels: bytes and format. */
export type InspectLimits = DecodeLimits & Pick<Limits, 'maxImageBytes' | 'imageFormats'>;

export interface ImageFacts {
  format: ImageFormat;
  width: number;
  height: number;
}

/** An RGB image as interleaved uint8 pixels (HWC). */
export interface RgbImage {
  width: number;
  height: number;
  data: Buffer;
}

/**
 * The longest edge any processor may resize to. Processors clamp their intermediate sizes to it, so an accepted
 * image costs at most MAX_RESIZE_EDGE² RGB pixels (48 MiB) per resize whatever its shape; model sizes in use are
 * far below it (64 to 2048), so normal images never meet the clamp.
 */
export const MAX_RESIZE_EDGE = 4096;

/**
 * The workers' decode limits: the same INTAKE_MAX_IMAGE_PIXELS / INTAKE_MAX_IMAGE_ASPECT_RATIO settings the door
 * reads (defaults when unset), so a job enqueued past the door (or with the decode check off) meets the same bounds.
 */
export function decodeLimitsFromEnv(env: NodeJS.ProcessEnv = process.env): DecodeLimits {
  const { maxImagePixels, maxImageAspectRatio } = limitsFromEnv(env);
  return { maxImagePixels, maxImageAspectRatio };
}

/**
 * Sharp input options shared by every decode. `failOn: 'warning'` is sharp's own default and the strictest level:
 * a JPEG with a bad Huffman code only warns in libjpeg, and `'error'` let it through the door while the workers'
 * default decode then refused it. `limitInputPixels` bounds the decoder itself, whatever the header check said.
 */
function decodeOptions(limits: DecodeLimits): SharpOptions {
  return { failOn: 'warning', limitInputPixels: limits.maxImagePixels };
}

/** Any failure of sharp on the input is the input's fault: one typed error, so no caller needs to read messages. */
function undecodable(what: string, err: unknown): ModerationError {
  return new ModerationError('image_undecodable', `${what}: ${(err as Error)?.message ?? String(err)}`);
}

/** Format from the magic bytes: the client's filename or content type is not trusted. */
export function sniffFormat(bytes: Uint8Array): string | null {
  const b = bytes;
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 12 && String.fromCharCode(...b.subarray(0, 4)) === 'RIFF' && String.fromCharCode(...b.subarray(8, 12)) === 'WEBP') return 'webp';
  if (b.length >= 4 && String.fromCharCode(...b.subarray(0, 4)) === 'GIF8') return 'gif';
  if (b.length >= 2 && b[0] === 0x42 && b[1] === 0x4d) return 'bmp';
  if (b.length >= 4 && ((b[0] === 0x49 && b[1] === 0x49) || (b[0] === 0x4d && b[1] === 0x4d)) && (b[2] === 0x2a || b[3] === 0x2a)) return 'tiff';
  return null;
}

/**
 * Width and height from the header, checked against the pixel and aspect-ratio limits before any pixel is
 * decoded: a decompression bomb is refused from its header, and so is a 100000x1 strip that every processor
 * would have to scale up to the model size.
 */
export async function readDimensions(bytes: Uint8Array, limits: DecodeLimits): Promise<{ width: number; height: number }> {
  let meta: { width?: number; height?: number };
  try {
    // The header only: the pixel limit is ours to report with its own code, not sharp's to throw.
    meta = await sharp(bytes, { ...decodeOptions(limits), limitInputPixels: false }).metadata();
  } catch (err) {
    throw undecodable('image header could not be read', err);
  }
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (!width || !height) throw new ModerationError('image_undecodable', 'image has no dimensions');
  if (width * height > limits.maxImagePixels) {
    throw new ModerationError('image_too_many_pixels', `image is ${width}x${height} = ${width * height} pixels; the limit is ${limits.maxImagePixels}`, {
      limit: limits.maxImagePixels,
      width,
      height,
    });
  }
  const ratio = Math.max(width, height) / Math.min(width, height);
  if (ratio > limits.maxImageAspectRatio) {
    throw new ModerationError(
      'image_aspect_ratio',
      `image is ${width}x${height}, an aspect ratio of ${ratio.toFixed(1)}:1; the limit is ${limits.maxImageAspectRatio}:1`,
      { limit: limits.maxImageAspectRatio, width, height },
    );
  }
  return { width, height };
}

/**
 * Images up to this many pixels are decode-checked whole (at most 4 MB of RGBA); larger ones stream into a 32x32
 * thumbnail. For a 64x64 PNG the thumbnail's resize made the check ~2.9x the decode alone (275 against 92 ms per 200,
 * four at a time), and the intake checks every image of a batch before any job exists.
 */
export const WHOLE_DECODE_MAX_PIXELS = 1024 * 1024;

/**
 * The door's checks, in the order that costs least: bytes, magic, header dimensions (pixels, aspect ratio), then
 * optionally a full decode with the workers' options.
 */
export async function inspectImage(bytes: Uint8Array, limits: InspectLimits, decodeCheck = true): Promise<ImageFacts> {
  if (bytes.byteLength > limits.maxImageBytes) {
    throw new ModerationError('image_too_large', `image is ${bytes.byteLength} bytes; the limit is ${limits.maxImageBytes}`, {
      limit: limits.maxImageBytes,
    });
  }
  const sniffed = sniffFormat(bytes);
  if (!sniffed || !(limits.imageFormats as string[]).includes(sniffed)) {
    throw new ModerationError('unsupported_image_format', `image format ${sniffed ?? 'unknown'} is not accepted; use ${limits.imageFormats.join(', ')}`, {
      accepted: limits.imageFormats,
    });
  }
  const { width, height } = await readDimensions(bytes, limits);
  if (decodeCheck) {
    try {
      // Every pixel through the decoder with `decodeRgb`'s options. A large image is streamed into a thumbnail so
      // memory stays small (fastShrinkOnLoad off: JPEG and WebP would otherwise decode at a reduced scale, which is
      // not the decode the workers run); a small one decodes whole, since with the resize its check cost ~3x the decode alone.
      const decoder = sharp(bytes, decodeOptions(limits));
      await (width * height <= WHOLE_DECODE_MAX_PIXELS ? decoder : decoder.resize(32, 32, { fit: 'inside', fastShrinkOnLoad: false })).raw().toBuffer();
    } catch (err) {
      throw undecodable('image could not be decoded', err);
    }
  }
  return { format: sniffed as ImageFormat, width, height };
}

/** The workers' decode: the door's header checks, then a strict decode to interleaved sRGB. */
export async function decodeRgb(bytes: Uint8Array, limits: DecodeLimits): Promise<RgbImage> {
  await readDimensions(bytes, limits);
  try {
    const { data, info } = await sharp(bytes, decodeOptions(limits)).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
    return { width: info.width, height: info.height, data };
  } catch (err) {
    throw undecodable('image could not be decoded', err);
  }
}
