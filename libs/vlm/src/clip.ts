import { join } from 'node:path';
import { type InferenceSession, Tensor } from 'onnxruntime-node';
import { ChatTokenizer } from './chat-tokenizer';
import { ClipImageProcessor } from './image-processor';
import { readJson } from './pack';
import { openSession, type SessionOptions } from './sessions';
import type { ClipEmbedder } from './types';

/** Pads token id lists to one length (right padding) and builds the int64 input_ids/attention_mask pair. */
export function padBatch(lists: number[][], padId: number): { ids: BigInt64Array; mask: BigInt64Array; length: number } {
  const length = Math.max(1, ...lists.map((l) => l.length));
  const ids = new BigInt64Array(lists.length * length).fill(BigInt(padId));
  const mask = new BigInt64Array(lists.length * length);
  lists.forEach((l, r) =>
    l.forEach((id, i) => {
      ids[r * length + i] = BigInt(id);
      mask[r * length + i] = 1n;
    }),
  );
  return { ids, mask, length };
}

function rows(data: Float32Array, n: number): Float32Array[] {
  const width = data.length / n;
  return Array.from({ length: n }, (_, i) => data.slice(i * width, (i + 1) * width));
}

/** A CLIP pack (onnx/text_model.onnx + onnx/vision_model.onnx), as the onnx-community exports lay it out. */
export class ClipModel implements ClipEmbedder {
  private constructor(
    private readonly text: InferenceSession,
    private readonly vision: InferenceSession,
    private readonly tokenizer: ChatTokenizer,
    private readonly images: ClipImageProcessor,
    private readonly padId: number,
    private readonly maxTextTokens: number,
  ) {}

  static async open(packDir: string, options: SessionOptions = {}): Promise<ClipModel> {
    const config = readJson(join(packDir, 'config.json'));
    const tokenizerConfig = readJson(join(packDir, 'tokenizer_config.json'));
    const tokenizerJson = readJson(join(packDir, 'tokenizer.json'));
    const tokenizer = new ChatTokenizer(tokenizerJson, tokenizerConfig);
    const padToken = typeof tokenizerConfig.pad_token === 'string' ? tokenizerConfig.pad_token : tokenizerConfig.pad_token?.content;
    const padId = config.text_config?.pad_token_id ?? (padToken ? tokenizer.tokenId(padToken) : undefined) ?? 0;
    const preprocessor = readJson(join(packDir, 'preprocessor_config.json'));
    const text = await openSession(join(packDir, 'onnx', 'text_model.onnx'), options);
    const vision = await openSession(join(packDir, 'onnx', 'vision_model.onnx'), options);
    const maxTextTokens = config.text_config?.max_position_embeddings ?? 77;
    return new ClipModel(text.session, vision.session, tokenizer, new ClipImageProcessor(preprocessor), padId, maxTextTokens);
  }

  async embedImages(images: Uint8Array[]): Promise<Float32Array[]> {
    if (images.length === 0) return [];
    const pixels = await Promise.all(images.map((i) => this.images.process(i)));
    const { width, height } = this.images.cropSize;
    const data = new Float32Array(pixels.length * pixels[0].length);
    pixels.forEach((p, i) => data.set(p, i * p.length));
    const out = await this.vision.run({ pixel_values: new Tensor('float32', data, [images.length, 3, height, width]) });
    return rows(out.image_embeds.data as Float32Array, images.length);
  }

  async embedTexts(texts: string[]): Promise<Float32Array[]> {
    if (texts.length === 0) return [];
    // The tokenizer's own post-processor adds CLIP's start/end tokens where the pack defines them.
    const { ids, mask, length } = padBatch(
      texts.map((t) => this.truncate(this.tokenizer.encode(t, true))),
      this.padId,
    );
    const feeds: Record<string, Tensor> = { input_ids: new Tensor('int64', ids, [texts.length, length]) };
    if (this.text.inputNames.includes('attention_mask')) feeds.attention_mask = new Tensor('int64', mask, [texts.length, length]);
    const out = await this.text.run(feeds);
    return rows(out.text_embeds.data as Float32Array, texts.length);
  }

  /** CLIP has learned positions for `max_position_embeddings` tokens; longer texts keep their end token, where pooling reads. */
  private truncate(ids: number[]): number[] {
    return ids.length <= this.maxTextTokens ? ids : [...ids.slice(0, this.maxTextTokens - 1), ids[ids.length - 1]];
  }

  async close(): Promise<void> {
    await Promise.all([this.text.release(), this.vision.release()]);
  }
}

export function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / (Math.sqrt(na) * Math.sqrt(nb) || 1);
}
