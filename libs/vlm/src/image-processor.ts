import sharp from 'sharp';
import { decodeLimitsFromEnv, decodeRgb, MAX_RESIZE_EDGE, type DecodeLimits, type RgbImage } from '@libs/imaging';

export type { RgbImage } from '@libs/imaging';

/** Pixels ready for a vision encoder: frames of [3, height, width], rescaled and normalized. */
export interface PixelFrames {
  frames: Float32Array[];
  height: number;
  width: number;
  /** Tile grid of a split image (0 x 0 when the image is not split); drives the prompt's image-token layout. */
  rows: number;
  cols: number;
}

// PIL resample codes used in HF preprocessor configs, mapped to sharp's kernels.
type Kernel = 'nearest' | 'linear' | 'cubic' | 'lanczos3';
const KERNELS: Record<number, Kernel> = { 0: 'nearest', 1: 'lanczos3', 2: 'linear', 3: 'cubic', 4: 'linear', 5: 'linear' };

interface Size {
  width: number;
  height: number;
}

export async function resizeRgb(image: RgbImage, width: number, height: number, resample: number): Promise<RgbImage> {
  if (image.width === width && image.height === height) return image;
  // The plans below keep every accepted image under this edge; meeting it means a plan is wrong, not the input.
  if (Math.max(width, height) > MAX_RESIZE_EDGE) throw new Error(`resize to ${width}x${height} is over the ${MAX_RESIZE_EDGE}-pixel edge budget`);
  const data = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(width, height, { fit: 'fill', kernel: KERNELS[resample] ?? 'lanczos3' })
    .raw()
    .toBuffer();
  return { width, height, data };
}

function crop(image: RgbImage, left: number, top: number, width: number, height: number): RgbImage {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    const from = ((top + y) * image.width + left) * 3;
    image.data.copy(data, y * width * 3, from, from + width * 3);
  }
  return { width, height, data };
}

interface Normalization {
  rescale: number;
  mean: number[];
  std: number[];
}

function normalization(config: Record<string, any>): Normalization {
  const three = (v: unknown, d: number) => (Array.isArray(v) ? v.map(Number) : [v ?? d, v ?? d, v ?? d].map(Number));
  return {
    rescale: config.do_rescale === false ? 1 : (config.rescale_factor ?? 1 / 255),
    mean: config.do_normalize === false ? [0, 0, 0] : three(config.image_mean, 0.5),
    std: config.do_normalize === false ? [1, 1, 1] : three(config.image_std, 0.5),
  };
}

/** HWC uint8 -> CHW float32, rescaled then normalized as the HF image processors do. */
function toChw(image: RgbImage, n: Normalization): Float32Array {
  const plane = image.width * image.height;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const scale = n.rescale / n.std[c];
    const shift = n.mean[c] / n.std[c];
    for (let i = 0; i < plane; i++) out[c * plane + i] = image.data[i * 3 + c] * scale - shift;
  }
  return out;
}

/**
 * Idefics3/SmolVLM image processing, following the Python `Idefics3ImageProcessor`: resize so the longest
 * edge is `size.longest_edge` (aspect kept, even short edge), then either split into `max_image_size` tiles
 * plus a global frame, or resize to one `max_image_size` square; rescale and normalize.
 */
export class Idefics3ImageProcessor {
  private readonly norm: Normalization;
  private readonly longestEdge: number;
  private readonly tileEdge: number;
  private readonly split: boolean;
  private readonly resample: number;

  constructor(
    private readonly config: Record<string, any>,
    private readonly limits: DecodeLimits = decodeLimitsFromEnv(),
  ) {
    this.norm = normalization(config);
    this.tileEdge = config.max_image_size?.longest_edge ?? config.size?.longest_edge;
    this.longestEdge = config.size?.longest_edge ?? this.tileEdge;
    this.split = config.do_image_splitting ?? true;
    this.resample = config.resample ?? 1;
    if (!this.tileEdge) throw new Error('preprocessor_config.json needs max_image_size.longest_edge or size.longest_edge');
  }

  /** The sizes `process` resizes an image of `width` x `height` to. */
  plan(width: number, height: number): Idefics3Plan {
    return idefics3ResizePlan(width, height, {
      longestEdge: this.longestEdge,
      tileEdge: this.tileEdge,
      resize: this.config.do_resize !== false,
      split: this.split,
    });
  }

  async process(bytes: Uint8Array): Promise<PixelFrames> {
    let image = await decodeRgb(bytes, this.limits);
    const plan = this.plan(image.width, image.height);
    image = await resizeRgb(image, plan.resized.width, plan.resized.height, this.resample);
    const edge = this.tileEdge;
    const tiles: RgbImage[] = [];
    let rows = 0;
    let cols = 0;
    if (plan.grid) {
      image = await resizeRgb(image, plan.grid.width, plan.grid.height, this.resample);
      if (image.width > edge || image.height > edge) {
        rows = Math.ceil(image.height / edge);
        cols = Math.ceil(image.width / edge);
        const tileH = Math.ceil(image.height / rows);
        const tileW = Math.ceil(image.width / cols);
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < cols; c++) {
            const top = r === rows - 1 ? image.height - tileH : r * tileH;
            const left = c === cols - 1 ? image.width - tileW : c * tileW;
            tiles.push(crop(image, left, top, tileW, tileH));
          }
        }
      }
    }
    tiles.push(await resizeRgb(image, edge, edge, this.resample));
    return { frames: tiles.map((t) => toChw(t, this.norm)), height: edge, width: edge, rows, cols };
  }
}

export interface Idefics3Plan {
  /** After the longest-edge resize (the decoded size when `do_resize` is off and nothing needs clamping). */
  resized: Size;
  /** The whole-tile grid the image is split on, when splitting. */
  grid?: Size;
}

/**
 * Python's sizes, clamped to MAX_RESIZE_EDGE: the longest-edge resize never goes past it, and the split grid
 * (which rounds both sides up to whole tiles) starts from at most the largest whole-tile edge under it. Model
 * sizes sit far below the budget, so only an image the door would refuse, or a pack with `do_resize` off, is
 * ever clamped.
 */
export function idefics3ResizePlan(width: number, height: number, o: { longestEdge: number; tileEdge: number; resize: boolean; split: boolean }): Idefics3Plan {
  let resized = { width, height };
  if (o.resize) resized = scaleLongestEdge(width, height, Math.min(o.longestEdge, MAX_RESIZE_EDGE));
  if (!o.split) return { resized };
  const cap = Math.max(o.tileEdge, Math.floor(MAX_RESIZE_EDGE / o.tileEdge) * o.tileEdge);
  if (Math.max(resized.width, resized.height) > cap) resized = scaleLongestEdge(resized.width, resized.height, cap);
  return { resized, grid: gridForVisionEncoder(resized.width, resized.height, o.tileEdge) };
}

/** Python's `_resize_output_size_rescale_to_max_len`. */
export function scaleLongestEdge(width: number, height: number, maxLen: number): { width: number; height: number } {
  const aspect = width / height;
  if (width >= height) {
    width = maxLen;
    height = Math.floor(width / aspect);
    if (height % 2 !== 0) height += 1;
  } else {
    height = maxLen;
    width = Math.floor(height * aspect);
    if (width % 2 !== 0) width += 1;
  }
  return { width: Math.max(width, 1), height: Math.max(height, 1) };
}

/**
 * Python's `_resize_for_vision_encoder`: both sides up to a multiple of the tile edge, aspect kept. The short
 * side is at least one tile: Python's rounds a sliver (under one pixel after the longest-edge resize) to 0.
 */
function gridForVisionEncoder(width: number, height: number, edge: number): { width: number; height: number } {
  const aspect = width / height;
  if (width >= height) {
    width = Math.ceil(width / edge) * edge;
    height = Math.max(edge, Math.ceil(Math.floor(width / aspect) / edge) * edge);
  } else {
    height = Math.ceil(height / edge) * edge;
    width = Math.max(edge, Math.ceil(Math.floor(height * aspect) / edge) * edge);
  }
  return { width, height };
}

export interface ClipPlan {
  /** The part of the decoded image that is resized; absent: all of it. */
  region?: { left: number; top: number; width: number; height: number };
  /** The size the region (or the image) is resized to. */
  width: number;
  height: number;
}

/**
 * CLIP's shortest-edge resize, clamped to MAX_RESIZE_EDGE. Unclamped, the long edge grows with the aspect ratio
 * (100000x1 at shortest edge 64 is 6400000x64, 1.2 GB), though the center crop keeps only its middle. So when the
 * resized long edge would pass the budget, the source is first cut to its central part that resizes to exactly
 * the budget, at the same scale; the crop then takes the same middle. Within the budget (every normal image)
 * the sizes are Python's, unchanged.
 */
export function clipResizePlan(width: number, height: number, shortest: number): ClipPlan {
  const scale = shortest / Math.min(width, height);
  const w = width <= height ? shortest : Math.round(width * scale);
  const h = height < width ? shortest : Math.round(height * scale);
  const cap = Math.max(MAX_RESIZE_EDGE, shortest);
  if (Math.max(w, h) <= cap) return { width: w, height: h };
  if (w > h) {
    const part = Math.min(width, Math.max(1, Math.round(cap / scale)));
    return { region: { left: Math.floor((width - part) / 2), top: 0, width: part, height }, width: cap, height: h };
  }
  const part = Math.min(height, Math.max(1, Math.round(cap / scale)));
  return { region: { left: 0, top: Math.floor((height - part) / 2), width, height: part }, width: w, height: cap };
}

/** CLIPImageProcessor: resize the shortest edge, center crop, rescale, normalize. */
export class ClipImageProcessor {
  private readonly norm: Normalization;

  constructor(
    private readonly config: Record<string, any>,
    private readonly limits: DecodeLimits = decodeLimitsFromEnv(),
  ) {
    this.norm = normalization({ image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711], ...config });
  }

  get cropSize(): { width: number; height: number } {
    const c = this.config.crop_size ?? this.config.size;
    if (typeof c === 'number') return { width: c, height: c };
    return { width: c?.width ?? c?.shortest_edge ?? 224, height: c?.height ?? c?.shortest_edge ?? 224 };
  }

  private get shortestEdge(): number {
    return typeof this.config.size === 'number' ? this.config.size : (this.config.size?.shortest_edge ?? 224);
  }

  /** The region and size `process` resizes an image of `width` x `height` to (none when `do_resize` is off). */
  plan(width: number, height: number): ClipPlan | undefined {
    return this.config.do_resize === false ? undefined : clipResizePlan(width, height, this.shortestEdge);
  }

  async process(bytes: Uint8Array): Promise<Float32Array> {
    let image = await decodeRgb(bytes, this.limits);
    const plan = this.plan(image.width, image.height);
    if (plan) {
      if (plan.region) image = crop(image, plan.region.left, plan.region.top, plan.region.width, plan.region.height);
      image = await resizeRgb(image, plan.width, plan.height, this.config.resample ?? 3);
    }
    if (this.config.do_center_crop !== false) {
      const { width, height } = this.cropSize;
      const left = Math.max(0, Math.round((image.width - width) / 2));
      const top = Math.max(0, Math.round((image.height - height) / 2));
      if (width !== image.width || height !== image.height) image = crop(image, left, top, Math.min(width, image.width), Math.min(height, image.height));
    }
    return toChw(image, this.norm);
  }
}
