import { type InferenceSession, Tensor } from 'onnxruntime-node';
import { KvCache } from './kv-cache';
import { loadVlmPack, type VlmPack } from './pack';
import { openSession, type SessionOptions } from './sessions';
import type { PixelFrames } from './image-processor';

/** Per-row revision inputs of one forward call; rows without revision carry zeros. */
export interface RevisionInputs {
  layer: Float32Array; // [batch * layers * hidden]
  head: Float32Array; // [batch * layers * heads * headDim]
  mask: Float32Array; // [batch * seq]
}

export interface ForwardInput {
  batch: number;
  seq: number;
  embeds: Float32Array; // [batch * seq * hidden]
  attentionMask: BigInt64Array; // [batch * (past + seq)]
  positionIds: BigInt64Array; // [batch * seq]
  cache: KvCache;
  revision?: RevisionInputs;
}

export interface ForwardOutput {
  logits: Float32Array; // [batch * seq * vocab]
  cache: KvCache;
  tapLayer?: Float32Array; // [batch * layers * hidden]
  tapHead?: Float32Array; // [batch * layers * heads * headDim]
}

// Below this many floats the whole embedding table is read once and token embedding becomes a copy,
// saving one session call per decode step; larger vocabularies (real SmolVLM: 49k x 576) keep the session.
const EMBEDDING_TABLE_MAX_FLOATS = 16 * 1024 * 1024;

/**
 * The ONNX sessions of a VLM pack (vision encoder, token embedding, decoder) and one forward call of each.
 * Knows tensors and shapes, nothing about prompts or sampling.
 */
export class VlmModel {
  private table?: Float32Array;

  private constructor(
    readonly pack: VlmPack,
    private readonly decoder: InferenceSession,
    private readonly embed: InferenceSession,
    private readonly vision: InferenceSession | undefined,
    readonly executionProvider: string,
    readonly revisable: boolean,
  ) {}

  static async open(packDir: string, options: SessionOptions & { revisable?: boolean } = {}): Promise<VlmModel> {
    const pack = loadVlmPack(packDir);
    const useRevisable = options.revisable !== false && pack.files.revisableDecoder !== undefined;
    const decoder = await openSession(useRevisable ? pack.files.revisableDecoder! : pack.files.decoder, options);
    const embed = await openSession(pack.files.embedTokens, options);
    const vision = pack.files.visionEncoder ? await openSession(pack.files.visionEncoder, options) : undefined;
    const model = new VlmModel(pack, decoder.session, embed.session, vision?.session, decoder.executionProvider, useRevisable);
    await model.loadEmbeddingTable();
    return model;
  }

  get hidden(): number {
    return this.pack.text.hidden;
  }

  private async loadEmbeddingTable(): Promise<void> {
    const { vocabSize, hidden } = this.pack.text;
    if (vocabSize * hidden > EMBEDDING_TABLE_MAX_FLOATS) return;
    const ids = BigInt64Array.from({ length: vocabSize }, (_, i) => BigInt(i));
    const out = await this.embed.run({ input_ids: new Tensor('int64', ids, [1, vocabSize]) });
    this.table = out.inputs_embeds.data as Float32Array;
  }

  /** Token embeddings for `ids`, written into `out` at `offset` (in floats). */
  async embedTokens(ids: number[], out: Float32Array, offset: number): Promise<void> {
    const h = this.hidden;
    if (this.table) {
      for (let i = 0; i < ids.length; i++) out.set(this.table.subarray(ids[i] * h, (ids[i] + 1) * h), offset + i * h);
      return;
    }
    const result = await this.embed.run({ input_ids: new Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]) });
    out.set(result.inputs_embeds.data as Float32Array, offset);
  }

  /** Image features [frames * imageSeqLen * hidden], in the order the prompt's image tokens appear. */
  async encodeImage(pixels: PixelFrames): Promise<Float32Array> {
    if (!this.vision) throw new Error(`model pack ${this.pack.name} has no vision encoder`);
    const n = pixels.frames.length;
    const plane = 3 * pixels.height * pixels.width;
    const data = new Float32Array(n * plane);
    pixels.frames.forEach((f, i) => data.set(f, i * plane));
    const feeds: Record<string, Tensor> = {
      pixel_values: new Tensor('float32', data, [1, n, 3, pixels.height, pixels.width]),
    };
    if (this.vision.inputNames.includes('pixel_attention_mask')) {
      const mask = new Uint8Array(n * pixels.height * pixels.width).fill(1);
      feeds.pixel_attention_mask = new Tensor('bool', mask, [1, n, pixels.height, pixels.width]);
    }
    const out = await this.vision.run(feeds);
    return out.image_features.data as Float32Array;
  }

  async forward(input: ForwardInput): Promise<ForwardOutput> {
    const { layers, hidden, heads, headDim, kvHeads } = this.pack.text;
    const { batch, seq } = input;
    const past = input.cache.length;
    const feeds: Record<string, Tensor> = {
      inputs_embeds: new Tensor('float32', input.embeds, [batch, seq, hidden]),
      attention_mask: new Tensor('int64', input.attentionMask, [batch, past + seq]),
    };
    // onnxruntime-genai decoders take no position_ids: GroupQueryAttention derives positions from the mask.
    if (this.decoder.inputNames.includes('position_ids')) feeds.position_ids = new Tensor('int64', input.positionIds, [batch, seq]);
    for (let l = 0; l < layers; l++) {
      feeds[`past_key_values.${l}.key`] = input.cache.tensors[2 * l];
      feeds[`past_key_values.${l}.value`] = input.cache.tensors[2 * l + 1];
    }
    if (this.revisable) {
      const r = input.revision;
      feeds.revision_layer = new Tensor('float32', r?.layer ?? new Float32Array(batch * layers * hidden), [batch, layers, hidden]);
      feeds.revision_head = new Tensor('float32', r?.head ?? new Float32Array(batch * layers * heads * headDim), [batch, layers, heads * headDim]);
      feeds.revision_mask = new Tensor('float32', r?.mask ?? new Float32Array(batch * seq), [batch, seq]);
    } else if (input.revision) {
      throw new Error(`model pack ${this.pack.name} has no revisable decoder: run 'modctl model prepare ${this.pack.dir}'`);
    }
    const out = await this.decoder.run(feeds);
    const present: Tensor[] = [];
    for (let l = 0; l < layers; l++) present.push(out[`present.${l}.key`], out[`present.${l}.value`]);
    return {
      logits: out.logits.data as Float32Array,
      cache: KvCache.fromPresent(present, kvHeads, headDim),
      tapLayer: out.tap_layer?.data as Float32Array | undefined,
      tapHead: out.tap_head?.data as Float32Array | undefined,
    };
  }

  async release(): Promise<void> {
    await Promise.all([this.decoder.release(), this.embed.release(), this.vision?.release()]);
  }
}
