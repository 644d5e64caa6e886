import { KvCache } from './kv-cache';
import { pickToken, seededRandom } from './sampler';
import type { EncodedPrompt, VlmProcessor } from './vlm-processor';
import type { ForwardOutput, RevisionInputs, VlmModel } from './vlm-model';
import type {
  AlignmentStats,
  Candidate,
  CandidateOptions,
  FinishReason,
  GenerationRequest,
  GenerationResult,
  RevisionFeed,
  TapFrame,
  TapRequest,
  TokenCallback,
} from './types';

/** Which positions of a prefill receive the revision, given the row's left padding. */
function prefillMask(positions: RevisionFeed['positions'], pad: number, seq: number, p: number): number {
  if (p < pad) return 0;
  if (positions === 'all') return 1;
  if (positions === 'last') return p === seq - 1 ? 1 : 0;
  return 0; // 'generated': the prompt is left untouched
}

/**
 * A batch of rows decoded together: left padding (so every row's last position is a real token),
 * the attention mask and position ids of each call, and the rows' revision vectors.
 */
class DecodeBatch {
  private readonly attention: number[][];
  private readonly nextPosition: number[];
  private readonly layerVectors?: Float32Array;
  private readonly headVectors?: Float32Array;
  cache: KvCache;

  constructor(
    private readonly model: VlmModel,
    readonly size: number,
    private readonly feeds: (RevisionFeed | undefined)[],
  ) {
    const { layers, hidden, heads, headDim, kvHeads } = model.pack.text;
    this.attention = Array.from({ length: size }, () => []);
    this.nextPosition = new Array(size).fill(0);
    this.cache = KvCache.empty(layers, size, kvHeads, headDim);
    if (feeds.some((f) => f)) {
      const layerSize = layers * hidden;
      const headSize = layers * heads * headDim;
      this.layerVectors = new Float32Array(size * layerSize);
      this.headVectors = new Float32Array(size * headSize);
      feeds.forEach((f, r) => {
        if (!f) return;
        if (f.layer) {
          if (f.layer.length !== layerSize) throw new RangeError(`revision.layer has ${f.layer.length} values, the model needs ${layerSize} (layers x hidden)`);
          this.layerVectors!.set(f.layer, r * layerSize);
        }
        if (f.head) {
          if (f.head.length !== headSize)
            throw new RangeError(`revision.head has ${f.head.length} values, the model needs ${headSize} (layers x heads x head_dim)`);
          this.headVectors!.set(f.head, r * headSize);
        }
      });
    }
  }

  private revision(seq: number, maskAt: (row: number, p: number) => number): RevisionInputs | undefined {
    if (!this.layerVectors) return undefined;
    const mask = new Float32Array(this.size * seq);
    for (let r = 0; r < this.size; r++) {
      if (!this.feeds[r]) continue;
      for (let p = 0; p < seq; p++) mask[r * seq + p] = maskAt(r, p);
    }
    return { layer: this.layerVectors, head: this.headVectors!, mask };
  }

  /** Continues from an existing cache of `history` attended positions (the rows of a best-of-N fork). */
  resume(cache: KvCache, nextPosition: number): void {
    this.cache = cache;
    for (let r = 0; r < this.size; r++) {
      this.attention[r] = new Array(cache.length).fill(1);
      this.nextPosition[r] = nextPosition;
    }
  }

  /** Runs all prompts left-padded to the longest; returns the forward output of that call. */
  async prefill(prompts: Float32Array[], lengths: number[]): Promise<ForwardOutput> {
    const hidden = this.model.hidden;
    const seq = Math.max(...lengths);
    const embeds = new Float32Array(this.size * seq * hidden);
    const positions = new BigInt64Array(this.size * seq);
    const pads = lengths.map((n) => seq - n);
    for (let r = 0; r < this.size; r++) {
      embeds.set(prompts[r], (r * seq + pads[r]) * hidden);
      for (let p = 0; p < seq; p++) {
        const real = p >= pads[r];
        this.attention[r].push(real ? 1 : 0);
        // transformers.js/HF: position = cumsum(mask) - 1, padding positions get 1.
        positions[r * seq + p] = BigInt(real ? p - pads[r] : 1);
      }
      this.nextPosition[r] = lengths[r];
    }
    const revision = this.revision(seq, (r, p) => prefillMask(this.feeds[r]!.positions, pads[r], seq, p));
    const out = await this.model.forward({
      batch: this.size,
      seq,
      embeds,
      attentionMask: this.attentionTensor(),
      positionIds: positions,
      cache: this.cache,
      revision,
    });
    this.cache = out.cache;
    return out;
  }

  /** Feeds one token per row. Every position decoded after the prompt is revised (all three modes). */
  async step(tokens: number[]): Promise<ForwardOutput> {
    const hidden = this.model.hidden;
    const embeds = new Float32Array(this.size * hidden);
    await this.model.embedTokens(tokens, embeds, 0);
    const positions = new BigInt64Array(this.size);
    for (let r = 0; r < this.size; r++) {
      this.attention[r].push(1);
      positions[r] = BigInt(this.nextPosition[r]++);
    }
    const revision = this.revision(1, () => 1);
    const out = await this.model.forward({
      batch: this.size,
      seq: 1,
      embeds,
      attentionMask: this.attentionTensor(),
      positionIds: positions,
      cache: this.cache,
      revision,
    });
    this.cache = out.cache;
    return out;
  }

  private attentionTensor(): BigInt64Array {
    const width = this.attention[0].length;
    const out = new BigInt64Array(this.size * width);
    for (let r = 0; r < this.size; r++) for (let p = 0; p < width; p++) out[r * width + p] = BigInt(this.attention[r][p]);
    return out;
  }
}

function tapFrame(out: ForwardOutput, row: number, layerSize: number, headSize: number): TapFrame {
  if (!out.tapLayer || !out.tapHead) throw new Error('taps need a revisable decoder (modctl model prepare)');
  return {
    layer: out.tapLayer.slice(row * layerSize, (row + 1) * layerSize),
    head: out.tapHead.slice(row * headSize, (row + 1) * headSize),
  };
}

interface RowState {
  request: GenerationRequest;
  random: () => number;
  stopIds: Set<number>;
  tokens: number[];
  text: string;
  finish?: FinishReason;
  taps?: TapFrame[];
}

/** One conversation of sentence-level best-of-N: a single-row cache and the logits for its next token. */
interface Conversation {
  cache: KvCache;
  nextLogits: Float32Array;
  nextPosition: number;
  feed?: RevisionFeed;
  prefix: string;
  tokens: number[];
  finished: boolean;
  stats: AlignmentStats;
  pending?: { cache: KvCache; candidates: Candidate[]; lengths: number[]; nextLogits: (Float32Array | undefined)[] };
}

/**
 * The decode loop: prefill + KV-cache steps for a batch of requests, teacher-forced tap reads, and the
 * stepwise conversations of sentence-level best-of-N. Revision and taps are part of every forward call.
 */
export class Generator {
  private readonly conversations = new Map<number, Conversation>();
  private nextHandle = 1;

  constructor(
    private readonly model: VlmModel,
    private readonly processor: VlmProcessor,
  ) {}

  private get sizes() {
    const { layers, hidden, heads, headDim, vocabSize } = this.model.pack.text;
    return { layerSize: layers * hidden, headSize: layers * heads * headDim, vocab: vocabSize };
  }

  /** Prompt embeddings with the image features written over the `<image>` token positions. */
  private async promptEmbeds(encoded: EncodedPrompt): Promise<Float32Array> {
    const hidden = this.model.hidden;
    const ids = encoded.inputIds;
    const embeds = new Float32Array(ids.length * hidden);
    await this.model.embedTokens(ids, embeds, 0);
    if (encoded.pixels) {
      const features = await this.model.encodeImage(encoded.pixels);
      const imageToken = this.model.pack.imageTokenId;
      let row = 0;
      for (let i = 0; i < ids.length; i++) {
        if (ids[i] !== imageToken) continue;
        if ((row + 1) * hidden > features.length) throw new Error('prompt has more <image> tokens than the vision encoder gave features');
        embeds.set(features.subarray(row * hidden, (row + 1) * hidden), i * hidden);
        row++;
      }
      if (row * hidden !== features.length) throw new Error(`prompt has ${row} <image> tokens, the vision encoder gave ${features.length / hidden} features`);
    }
    return embeds;
  }

  private async encodeAll(items: { prompt: string; image?: Uint8Array; assistantText?: string }[]) {
    const encoded = await Promise.all(items.map((i) => this.processor.encode(i)));
    const embeds: Float32Array[] = [];
    for (const e of encoded) embeds.push(await this.promptEmbeds(e));
    return { lengths: encoded.map((e) => e.inputIds.length), embeds };
  }

  async generate(requests: GenerationRequest[], onToken?: TokenCallback): Promise<GenerationResult[]> {
    const { layerSize, headSize, vocab } = this.sizes;
    const pack = this.model.pack;
    const { lengths, embeds } = await this.encodeAll(requests.map((r) => ({ prompt: r.prompt, image: r.image, assistantText: r.answerPrefix })));
    const rows: RowState[] = requests.map((request) => ({
      request,
      random: seededRandom(request.sampling?.seed ?? Math.floor(Math.random() * 2 ** 32)),
      stopIds: new Set([...(request.ignoreEos ? [] : pack.eosTokenIds), ...(request.stopTokenIds ?? [])]),
      tokens: [],
      text: '',
      taps: request.taps ? [] : undefined,
    }));
    const batch = new DecodeBatch(
      this.model,
      requests.length,
      requests.map((r) => r.revision),
    );

    const t0 = performance.now();
    let out = await batch.prefill(embeds, lengths);
    const prefillMs = performance.now() - t0;
    let seq = Math.max(...lengths);
    const t1 = performance.now();
    for (;;) {
      const next: number[] = [];
      rows.forEach((row, r) => {
        if (row.taps && !row.finish) row.taps.push(tapFrame(out, r, layerSize, headSize));
        if (row.finish) {
          next.push(pack.padTokenId);
          return;
        }
        const token = pickToken(out.logits, (r * seq + seq - 1) * vocab, vocab, row.request.sampling, row.random);
        next.push(token);
        this.appendToken(row, r, token, onToken);
      });
      if (rows.every((row) => row.finish)) break;
      out = await batch.step(next);
      seq = 1;
    }
    const decodeMs = performance.now() - t1;

    return rows.map((row, r) => ({
      text: (row.request.answerPrefix ?? '') + row.text,
      tokens: row.tokens,
      promptTokens: lengths[r],
      finishReason: row.finish!,
      ...(row.taps ? { taps: row.taps } : {}),
      timings: { prefillMs, decodeMs },
    }));
  }

  private appendToken(row: RowState, index: number, token: number, onToken?: TokenCallback): void {
    const request = row.request;
    row.tokens.push(token);
    const isEos = !request.ignoreEos && this.model.pack.eosTokenIds.includes(token);
    if (row.stopIds.has(token)) row.finish = isEos ? 'eos' : 'stop_token';
    const text = this.processor.tokenizer.decode(row.tokens);
    const stop = request.stopStrings?.find((s) => s && text.includes(s));
    const visible = stop ? text.slice(0, text.indexOf(stop) + stop.length) : text;
    const delta = visible.startsWith(row.text) ? visible.slice(row.text.length) : '';
    row.text = visible;
    onToken?.(index, token, delta);
    if (stop && !row.finish) row.finish = 'stop_string';
    if (!row.finish && row.tokens.length >= (request.maxNewTokens ?? this.model.pack.maxNewTokens)) row.finish = 'length';
  }

  /** One teacher-forced forward pass per batch; the frame of each request's last token. */
  async readTaps(requests: TapRequest[]): Promise<TapFrame[]> {
    const { layerSize, headSize } = this.sizes;
    const { lengths, embeds } = await this.encodeAll(requests.map((r) => ({ prompt: r.prompt, image: r.image, assistantText: r.response })));
    const batch = new DecodeBatch(
      this.model,
      requests.length,
      requests.map((r) => r.revision),
    );
    const out = await batch.prefill(embeds, lengths);
    return requests.map((_, r) => tapFrame(out, r, layerSize, headSize));
  }

  async open(request: { prompt: string; image?: Uint8Array; answerPrefix?: string; revision?: RevisionFeed }): Promise<number> {
    const { vocab } = this.sizes;
    const { lengths, embeds } = await this.encodeAll([{ prompt: request.prompt, image: request.image, assistantText: request.answerPrefix }]);
    const batch = new DecodeBatch(this.model, 1, [request.revision]);
    const out = await batch.prefill(embeds, lengths);
    const n = lengths[0];
    const handle = this.nextHandle++;
    this.conversations.set(handle, {
      cache: batch.cache,
      nextLogits: out.logits.slice((n - 1) * vocab, n * vocab),
      nextPosition: n,
      feed: request.revision,
      prefix: request.answerPrefix ?? '',
      tokens: [],
      finished: false,
      stats: { prefillTokens: n, decodeSteps: 0, maxBatch: 1 },
    });
    return handle;
  }

  private conversation(handle: number): Conversation {
    const c = this.conversations.get(handle);
    if (!c) throw new Error(`no open conversation ${handle}`);
    return c;
  }

  /**
   * Forks the conversation's cache into `n` rows and samples one sentence per row as one batch. A row that
   * ends still feeds its last token once, so the chosen row's cache and next-token logits are complete.
   */
  async sampleCandidates(handle: number, options: CandidateOptions): Promise<Candidate[]> {
    const c = this.conversation(handle);
    if (c.finished) throw new Error(`conversation ${handle} already ended with eos`);
    const { vocab } = this.sizes;
    const { n } = options;
    const eos = new Set(this.model.pack.eosTokenIds);
    const ends = new Set(options.endTokenIds);
    const sampling = { temperature: options.temperature, topK: options.topK };
    const randoms = Array.from({ length: n }, (_, j) => seededRandom((options.seed * 7919 + j * 104729) >>> 0));
    const tokens: number[][] = Array.from({ length: n }, () => []);
    const eosRow = new Array<boolean>(n).fill(false);
    const nextLogits: (Float32Array | undefined)[] = new Array(n).fill(undefined);
    // 0: sampling, 1: its last token still has to be fed, 2: done
    const phase = new Array<number>(n).fill(0);

    const sample = (logits: Float32Array, offset: number, j: number) => {
      const token = pickToken(logits, offset, vocab, sampling, randoms[j]);
      tokens[j].push(token);
      if (eos.has(token)) {
        eosRow[j] = true;
        phase[j] = 2; // the answer ends here; nothing after eos is ever decoded
      } else if (ends.has(token) || tokens[j].length >= options.maxTokens) phase[j] = 1;
    };
    for (let j = 0; j < n; j++) sample(c.nextLogits, 0, j);

    const batch = new DecodeBatch(this.model, n, new Array(n).fill(c.feed));
    batch.resume(c.cache.repeatRow(0, n), c.nextPosition);

    while (phase.some((p) => p < 2)) {
      // Finished rows feed padding; what they add to their cache lies past their length and is cut at accept.
      const feed = tokens.map((t, j) => (phase[j] === 2 ? this.model.pack.padTokenId : t[t.length - 1]));
      const out = await batch.step(feed);
      c.stats.decodeSteps++;
      c.stats.maxBatch = Math.max(c.stats.maxBatch, n);
      for (let j = 0; j < n; j++) {
        if (phase[j] === 1) {
          nextLogits[j] = out.logits.slice(j * vocab, (j + 1) * vocab);
          phase[j] = 2;
        } else if (phase[j] === 0) sample(out.logits, j * vocab, j);
      }
    }
    const cache = batch.cache;
    const candidates = tokens.map((t, j) => ({ tokens: t, text: this.processor.tokenizer.decode(t), eos: eosRow[j] }));
    c.pending = { cache, candidates, lengths: tokens.map((t, j) => c.cache.length + t.length - (eosRow[j] ? 1 : 0)), nextLogits };
    return candidates;
  }

  async accept(handle: number, index: number): Promise<void> {
    const c = this.conversation(handle);
    const pending = c.pending;
    if (!pending || index < 0 || index >= pending.candidates.length) throw new Error(`conversation ${handle} has no candidate ${index}`);
    const chosen = pending.candidates[index];
    c.tokens.push(...chosen.tokens);
    c.pending = undefined;
    if (chosen.eos) {
      c.finished = true;
      return;
    }
    c.cache = pending.cache.takeRow(index, pending.lengths[index]);
    c.nextLogits = pending.nextLogits[index]!;
    c.nextPosition += chosen.tokens.length;
  }

  async text(handle: number): Promise<string> {
    const c = this.conversation(handle);
    return c.tokens.length ? c.prefix + this.processor.tokenizer.decode(c.tokens) : c.prefix;
  }

  async stats(handle: number): Promise<AlignmentStats> {
    return { ...this.conversation(handle).stats };
  }

  async release(handle: number): Promise<void> {
    this.conversations.delete(handle);
  }
}
