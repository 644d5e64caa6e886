import sharp from 'sharp';

/** An RGB image as interleaved uint8 pixels (HWC). */
export interface RgbImage {
  width: number;
  height: number;
  data: Buffer;
}

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

export async function decodeRgb(bytes: Uint8Array): Promise<RgbImage> {
  const { data, info } = await sharp(bytes).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data };
}

export async function resizeRgb(image: RgbImage, width: number, height: number, resample: number): Promise<RgbImage> {
  if (image.width === width && image.height === height) return image;
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
    rescale: config.do_rescale === false ? 1 : config.rescale_factor ?? 1 / 255,
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

  constructor(private readonly config: Record<string, any>) {
    this.norm = normalization(config);
    this.tileEdge = config.max_image_size?.longest_edge ?? config.size?.longest_edge;
    this.longestEdge = config.size?.longest_edge ?? this.tileEdge;
    this.split = config.do_image_splitting ?? true;
    this.resample = config.resample ?? 1;
    if (!this.tileEdge) throw new Error('preprocessor_config.json needs max_image_size.longest_edge or size.longest_edge');
  }

  async process(bytes: Uint8Array): Promise<PixelFrames> {
    let image = await decodeRgb(bytes);
    if (this.config.do_resize !== false) {
      const { width, height } = scaleLongestEdge(image.width, image.height, this.longestEdge);
      image = await resizeRgb(image, width, height, this.resample);
    }
    const edge = this.tileEdge;
    const tiles: RgbImage[] = [];
    let rows = 0;
    let cols = 0;
    if (this.split) {
      const grid = gridForVisionEncoder(image.width, image.height, edge);
      image = await resizeRgb(image, grid.width, grid.height, this.resample);
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

/** Python's `_resize_for_vision_encoder`: both sides up to a multiple of the tile edge, aspect kept. */
function gridForVisionEncoder(width: number, height: number, edge: number): { width: number; height: number } {
  const aspect = width / height;
  if (width >= height) {
    width = Math.ceil(width / edge) * edge;
    height = Math.ceil(Math.floor(width / aspect) / edge) * edge;
  } else {
    height = Math.ceil(height / edge) * edge;
    width = Math.ceil(Math.floor(height * aspect) / edge) * edge;
  }
  return { width, height };
}

/** CLIPImageProcessor: resize the shortest edge, center crop, rescale, normalize. */
export class ClipImageProcessor {
  private readonly norm: Normalization;

  constructor(private readonly config: Record<string, any>) {
    this.norm = normalization({ image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711], ...config });
  }

  get cropSize(): { width: number; height: number } {
    const c = this.config.crop_size ?? this.config.size;
    if (typeof c === 'number') return { width: c, height: c };
    return { width: c?.width ?? c?.shortest_edge ?? 224, height: c?.height ?? c?.shortest_edge ?? 224 };
  }

  async process(bytes: Uint8Array): Promise<Float32Array> {
    let image = await decodeRgb(bytes);
    const shortest = typeof this.config.size === 'number' ? this.config.size : this.config.size?.shortest_edge ?? 224;
    if (this.config.do_resize !== false) {
      const scale = shortest / Math.min(image.width, image.height);
      const width = image.width <= image.height ? shortest : Math.round(image.width * scale);
      const height = image.height < image.width ? shortest : Math.round(image.height * scale);
      image = await resizeRgb(image, width, height, this.config.resample ?? 3);
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
