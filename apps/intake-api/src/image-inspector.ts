import sharp from 'sharp';
import { ModerationError, type ImageFormat, type Limits } from '@libs/contracts';

export interface ImageFacts {
  format: ImageFormat;
  width: number;
  height: number;
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
 * Checks an upload against the limits in the order that costs least: bytes, magic, header dimensions (before
 * any pixel is decoded, so a decompression bomb is refused from its header), then optionally a full decode.
 */
export async function inspectImage(bytes: Uint8Array, limits: Limits, decodeCheck: boolean): Promise<ImageFacts> {
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
  let meta: { width?: number; height?: number };
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw new ModerationError('image_undecodable', `image header could not be read: ${(err as Error).message}`);
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
  if (decodeCheck) {
    try {
      // A thumbnail forces a full, streaming decode (shrink-on-load keeps memory small) and trips on truncation.
      await sharp(bytes, { limitInputPixels: limits.maxImagePixels, failOn: 'error' }).resize(32, 32, { fit: 'inside' }).raw().toBuffer();
    } catch (err) {
      throw new ModerationError('image_undecodable', `image could not be decoded: ${(err as Error).message}`);
    }
  }
  return { format: sniffed as ImageFormat, width, height };
}
