import { existsSync, statSync } from 'node:fs';
import { type InferenceSession, Tensor } from 'onnxruntime-node';
import { readModel } from '@libs/onnx-graph';
import { fromHalfArray, toHalfArray } from './float16';
import { type CacheAlignment, type CacheElementType, KvCache } from './kv-cache';
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
  /**
   * Whether the caller reads this call's taps. A call with no revision and no taps runs the plain decoder when one is
   * loaded beside the revisable one (the zero revision feeds cost a revisable step ~6.6%, issue 15).
   * @defaultValue true
   */
  taps?: boolean;
}

export interface ForwardOutput {
  logits: Float32Array; // [batch * seq * vocab]
  cache: KvCache;
  tapLayer?: Float32Array; // [batch * layers * hidden]
  tapHead?: Float32Array; // [batch * layers * heads * headDim]
  /** The call ran the plain decoder (see ForwardInput.taps). */
  plain?: boolean;
}

/** What the runtime must know of a decoder's I/O to feed it, read from the session and graph, never from names. */
export interface DecoderIo {
  /** Element type of inputs_embeds and past_key_values.* as declared (optimum --fp16 exports declare float16). */
  embeds: CacheElementType;
  cache: CacheElementType;
  /** Whether the decoder takes position_ids (onnxruntime-genai decoders derive positions from the mask). */
  positionIds: boolean;
  /**
   * The decoder attends through GroupQueryAttention (found as a node of the graph): it takes each row's valid length
   * from seqlens_k (= sum(attention_mask) - 1) and writes the new key/value at that column, so it is only correct on
   * rows packed from column 0 (right padding); a left-padded row would get wrong positions and attend to padding.
   */
  groupQueryAttention: boolean;
  /** How DecodeBatch lays rows out in the cache: 'left' (packed) for GroupQueryAttention, else 'right'. */
  cacheAlignment: CacheAlignment;
}

/** `true`/`false`, or 'auto': load the plain decoder beside the revisable one when its weights are small. */
export type PlainDecoderChoice = boolean | 'auto';

/**
 * 'auto' loads the plain decoder up to this size (bytes, the decoder file and its external data). The revision
 * inputs add a fixed number of small kernels per step (~0.4 M instructions by callgrind, `npm run bench --
 * revision-overhead`): +7% of a tiny-pack step, +0.96% at SmolVLM-256M size, while a second copy of the decoder
 * costs its size in memory again. Below this size the copy is cheap and the saving large; above it, the reverse.
 */
export const PLAIN_DECODER_AUTO_MAX_BYTES = 64 * 1024 * 1024;

function fileBytes(path: string): number {
  return [path, `${path}_data`, `${path}.data`].filter((p) => existsSync(p)).reduce((n, p) => n + statSync(p).size, 0);
}

const declaredFloat16 = new WeakMap<InferenceSession, Set<string>>();

/** Element types the runtime converts at the session boundary; anything else is fed as declared (float32). */
function floatType(session: InferenceSession, name: string, side: 'input' | 'output'): CacheElementType {
  let declared = declaredFloat16.get(session);
  if (!declared) {
    // Read once per session: the metadata getters build their arrays anew, and forward asks every step.
    declared = new Set();
    for (const [s, list] of [
      ['input', session.inputMetadata],
      ['output', session.outputMetadata],
    ] as const) {
      for (const m of list) if (m.isTensor && m.type === 'float16') declared.add(`${s}:${m.name}`);
    }
    declaredFloat16.set(session, declared);
  }
  return declared.has(`${side}:${name}`) ? 'float16' : 'float32';
}

/** A float tensor of the type the session declares for `name`: float16 inputs get the values rounded to half. */
function floatFeed(session: InferenceSession, name: string, data: Float32Array, dims: number[]): Tensor {
  return floatType(session, name, 'input') === 'float16' ? new Tensor('float16', toHalfArray(data), dims) : new Tensor('float32', data, dims);
}

/** A float output as float32 values, whatever its declared type. */
function floatValues(t: Tensor): Float32Array {
  return t.type === 'float16' ? fromHalfArray(t.data as Uint16Array) : (t.data as Float32Array);
}

function decoderIo(session: InferenceSession, path: string): DecoderIo {
  const positionIds = session.inputNames.includes('position_ids');
  // Only a decoder without position_ids can be a GroupQueryAttention one (GQA derives positions itself), so the
  // graph is read only then: optimum exports never pay for the parse. readModel does not load external data.
  const groupQueryAttention = !positionIds && readModel(path).graph.node.some((n) => n.op_type === 'GroupQueryAttention');
  return {
    embeds: floatType(session, 'inputs_embeds', 'input'),
    cache: floatType(session, 'past_key_values.0.key', 'input'),
    positionIds,
    groupQueryAttention,
    cacheAlignment: groupQueryAttention ? 'left' : 'right',
  };
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
    /** The pack's decoder without the revision inputs and taps, beside the revisable one (`decoder`); same cache. */
    private readonly plainDecoder: InferenceSession | undefined,
    private readonly embed: InferenceSession,
    private readonly vision: InferenceSession | undefined,
    readonly executionProvider: string,
    readonly revisable: boolean,
    readonly decoderIo: DecoderIo,
  ) {}

  static async open(packDir: string, options: SessionOptions & { revisable?: boolean; plainDecoder?: PlainDecoderChoice } = {}): Promise<VlmModel> {
    const pack = loadVlmPack(packDir);
    const useRevisable = options.revisable !== false && pack.files.revisableDecoder !== undefined;
    const decoderPath = useRevisable ? pack.files.revisableDecoder! : pack.files.decoder;
    const decoder = await openSession(decoderPath, options);
    const choice = options.plainDecoder ?? 'auto';
    const withPlain = useRevisable && (choice === 'auto' ? fileBytes(pack.files.decoder) <= PLAIN_DECODER_AUTO_MAX_BYTES : choice);
    const plain = withPlain ? await openSession(pack.files.decoder, options) : undefined;
    const embed = await openSession(pack.files.embedTokens, options);
    const vision = pack.files.visionEncoder ? await openSession(pack.files.visionEncoder, options) : undefined;
    const model = new VlmModel(
      pack,
      decoder.session,
      plain?.session,
      embed.session,
      vision?.session,
      decoder.executionProvider,
      useRevisable,
      decoderIo(decoder.session, decoderPath),
    );
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
    this.table = floatValues(out.inputs_embeds);
  }

  /** Token embeddings for `ids`, written into `out` at `offset` (in floats). */
  async embedTokens(ids: number[], out: Float32Array, offset: number): Promise<void> {
    const h = this.hidden;
    if (this.table) {
      for (let i = 0; i < ids.length; i++) out.set(this.table.subarray(ids[i] * h, (ids[i] + 1) * h), offset + i * h);
      return;
    }
    const result = await this.embed.run({ input_ids: new Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]) });
    out.set(floatValues(result.inputs_embeds), offset);
  }

  /** Image features [frames * imageSeqLen * hidden], in the order the prompt's image tokens appear. */
  async encodeImage(pixels: PixelFrames): Promise<Float32Array> {
    return (await this.encodeImages([pixels]))[0];
  }

  /**
   * The features of several images, each as `encodeImage` gives them. Frames of the same size are stacked into one
   * vision-encoder call ([1, frames, 3, height, width]: the encoder embeds each frame on its own, as it does the tiles
   * of one split image), so a batch of images costs one call per frame size instead of one per image.
   */
  async encodeImages(images: readonly PixelFrames[]): Promise<Float32Array[]> {
    const vision = this.vision;
    if (!vision) throw new Error(`model pack ${this.pack.name} has no vision encoder`);
    const out: Float32Array[] = new Array(images.length);
    const bySize = new Map<string, number[]>();
    images.forEach((p, i) => {
      const size = `${p.height}x${p.width}`;
      bySize.set(size, [...(bySize.get(size) ?? []), i]);
    });
    for (const members of bySize.values()) {
      const { height, width } = images[members[0]];
      const frames = members.flatMap((i) => images[i].frames);
      const plane = 3 * height * width;
      const data = new Float32Array(frames.length * plane);
      frames.forEach((f, i) => data.set(f, i * plane));
      const feeds: Record<string, Tensor> = {
        pixel_values: floatFeed(vision, 'pixel_values', data, [1, frames.length, 3, height, width]),
      };
      if (vision.inputNames.includes('pixel_attention_mask')) {
        const mask = new Uint8Array(frames.length * height * width).fill(1);
        feeds.pixel_attention_mask = new Tensor('bool', mask, [1, frames.length, height, width]);
      }
      const features = floatValues((await vision.run(feeds)).image_features);
      const perFrame = features.length / frames.length;
      let at = 0;
      for (const i of members) {
        const size = images[i].frames.length * perFrame;
        out[i] = features.subarray(at, at + size);
        at += size;
      }
    }
    return out;
  }

  async forward(input: ForwardInput): Promise<ForwardOutput> {
    const { layers, hidden, heads, headDim, kvHeads } = this.pack.text;
    const { batch, seq } = input;
    const past = input.cache.length;
    const plain = this.plainDecoder !== undefined && !input.revision && input.taps === false;
    const decoder = plain ? this.plainDecoder! : this.decoder;
    const feeds: Record<string, Tensor> = {
      inputs_embeds: floatFeed(decoder, 'inputs_embeds', input.embeds, [batch, seq, hidden]),
      attention_mask: new Tensor('int64', input.attentionMask, [batch, past + seq]),
    };
    // onnxruntime-genai decoders take no position_ids: GroupQueryAttention derives positions from the mask.
    if (this.decoderIo.positionIds) feeds.position_ids = new Tensor('int64', input.positionIds, [batch, seq]);
    for (let l = 0; l < layers; l++) {
      feeds[`past_key_values.${l}.key`] = input.cache.tensors[2 * l];
      feeds[`past_key_values.${l}.value`] = input.cache.tensors[2 * l + 1];
    }
    if (this.revisable && !plain) {
      const r = input.revision;
      const d = this.decoder;
      feeds.revision_layer = floatFeed(d, 'revision_layer', r?.layer ?? new Float32Array(batch * layers * hidden), [batch, layers, hidden]);
      feeds.revision_head = floatFeed(d, 'revision_head', r?.head ?? new Float32Array(batch * layers * heads * headDim), [batch, layers, heads * headDim]);
      feeds.revision_mask = floatFeed(d, 'revision_mask', r?.mask ?? new Float32Array(batch * seq), [batch, seq]);
    } else if (input.revision) {
      throw new Error(`model pack ${this.pack.name} has no revisable decoder: run 'modctl model prepare ${this.pack.dir}'`);
    }
    const out = await decoder.run(feeds);
    const present: Tensor[] = [];
    for (let l = 0; l < layers; l++) present.push(out[`present.${l}.key`], out[`present.${l}.value`]);
    return {
      logits: floatValues(out.logits),
      cache: KvCache.fromPresent(present, kvHeads, headDim),
      tapLayer: out.tap_layer && floatValues(out.tap_layer),
      tapHead: out.tap_head && floatValues(out.tap_head),
      plain,
    };
  }

  async release(): Promise<void> {
    await Promise.all([this.decoder.release(), this.plainDecoder?.release(), this.embed.release(), this.vision?.release()]);
  }
}
