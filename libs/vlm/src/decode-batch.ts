import { type GatherSource, KvCache } from './kv-cache';
import type { ForwardOutput, RevisionInputs, VlmModel } from './vlm-model';
import { checkProbe, gateScale, readProbe } from './linear-probe';
import type { RevisionFeed, TapFrame } from './types';

/** Which positions of a prefill receive the revision, given the row's left padding. */
function prefillMask(positions: RevisionFeed['positions'], pad: number, seq: number, p: number): number {
  if (p < pad) return 0;
  if (positions === 'all') return 1;
  if (positions === 'last') return p === seq - 1 ? 1 : 0;
  return 0; // 'generated': the prompt is left untouched
}

/** Throws before a row is admitted, so one malformed request never fails the batch it would have joined. */
export function checkRevisionFeed(model: VlmModel, feed: RevisionFeed | undefined): void {
  if (!feed) return;
  const { layers, hidden, heads, headDim } = model.pack.text;
  const layerSize = layers * hidden;
  const headSize = layers * heads * headDim;
  if (feed.layer && feed.layer.length !== layerSize)
    throw new RangeError(`revision.layer has ${feed.layer.length} values, the model needs ${layerSize} (layers x hidden)`);
  if (feed.head && feed.head.length !== headSize)
    throw new RangeError(`revision.head has ${feed.head.length} values, the model needs ${headSize} (layers x heads x head_dim)`);
  if (feed.gate) {
    const { probe, low, high } = feed.gate;
    if (!model.revisable) throw new RangeError('a gated revision reads taps: the decoder needs tap outputs (modctl model prepare)');
    checkProbe(probe, { layers, hidden }, 'revision.gate.probe');
    if (!(Number.isFinite(low) && Number.isFinite(high) && high > low)) throw new RangeError('revision.gate needs finite low < high');
  }
}

/** `feed` times `scale`; undefined at 0, so a row the gate closes runs exactly as a row without revision. */
export function scaleFeed(feed: RevisionFeed, scale: number): RevisionFeed | undefined {
  if (scale === 0) return undefined;
  const times = (v: Float32Array | undefined) => (v && scale !== 1 ? v.map((x) => x * scale) : v);
  return { layer: times(feed.layer), head: times(feed.head), positions: feed.positions };
}

/** What a prefill returns beside the batch: per row, the revision it actually got. */
export interface PrefillResult {
  batch: DecodeBatch;
  out: ForwardOutput;
  seq: number;
  /** The feed each row runs with from now on: a gated feed resolved to its scaled, ungated form (undefined at 0). */
  feeds: (RevisionFeed | undefined)[];
  /** The gate's scale per gated row (undefined for the others). */
  scales: (number | undefined)[];
  /** A gated row's tap frame from the pass WITHOUT revision (the one its gate and probes read). */
  unrevised: (TapFrame | undefined)[];
}

/**
 * One row of a batch: its revision, how many cache columns it does not use (leading ones when rows are right-aligned,
 * trailing ones when packed from column 0 for GroupQueryAttention), and its next position id.
 */
interface BatchRow {
  feed?: RevisionFeed;
  pad: number;
  nextPosition: number;
}

/** The frame of `row` at the last position of a forward call's output. */
export function tapFrame(model: VlmModel, out: ForwardOutput, row: number): TapFrame {
  if (!out.tapLayer || !out.tapHead) throw new Error('taps need a revisable decoder (modctl model prepare)');
  const { layers, hidden, heads, headDim } = model.pack.text;
  const layerSize = layers * hidden;
  const headSize = layers * heads * headDim;
  return {
    layer: out.tapLayer.slice(row * layerSize, (row + 1) * layerSize),
    head: out.tapHead.slice(row * headSize, (row + 1) * headSize),
  };
}

/**
 * Rows decoded together over one KV cache. Each row is left-padded (its first `pad` columns are masked out), so
 * every row's last position is a real token and rows of any length share one forward call; each keeps its own
 * position ids and revision vectors. Rows join (`join`) and leave (`keep`) between steps: the cache is regathered,
 * right-aligned, and the columns no remaining row attends to are cut away.
 *
 * GroupQueryAttention decoders (onnxruntime-genai) cannot take left padding: GQA reads each row's valid length from
 * seqlens_k = sum(mask) - 1, rotates by positions counted from column 0, and appends the new key/value at column
 * seqlens_k. For them (`decoderIo.cacheAlignment` 'left') rows are packed from column 0 and padded on the right: a
 * step's mask is ones over the row's own columns then zeros, and GQA writes each row's token right after its own
 * positions. A padded prefill would put a short row's last token before the end, where the last-position logits and
 * taps are read, so their prompts of different lengths prefill in one call per length and then join.
 */
export class DecodeBatch {
  private revisionVectors?: { layer: Float32Array; head: Float32Array } | null;

  private constructor(
    private readonly model: VlmModel,
    private rows: BatchRow[],
    private cacheState: KvCache,
  ) {}

  get size(): number {
    return this.rows.length;
  }

  get cache(): KvCache {
    return this.cacheState;
  }

  /** Columns of the cache (the longest row's length). */
  get length(): number {
    return this.cacheState.length;
  }

  /**
   * Runs all prompts as one prefill. Rows with a gated revision (input-adaptive, types.ts RevisionGate) are first
   * prefilled without revision to read their gate at the last prompt token, then with the scaled feed: a gated row
   * costs one extra prefill, never a decode step. When every row is gated and every gate closes, the unrevised pass
   * is the prefill (the common case of a benign batch) and nothing runs twice.
   */
  static async prefill(model: VlmModel, prompts: Float32Array[], lengths: number[], feeds: (RevisionFeed | undefined)[]): Promise<PrefillResult> {
    const gated = feeds.flatMap((f, i) => (f?.gate ? [i] : []));
    const scales: (number | undefined)[] = feeds.map(() => undefined);
    const unrevised: (TapFrame | undefined)[] = feeds.map(() => undefined);
    if (gated.length === 0) return { ...(await DecodeBatch.prefillRows(model, prompts, lengths, feeds)), feeds, scales, unrevised };
    const probe = await DecodeBatch.prefillRows(
      model,
      gated.map((i) => prompts[i]),
      gated.map((i) => lengths[i]),
      gated.map(() => undefined),
    );
    gated.forEach((i, k) => {
      const frame = tapFrame(model, probe.out, k);
      const gate = feeds[i]!.gate!;
      unrevised[i] = frame;
      scales[i] = gateScale(gate, readProbe(gate.probe, frame.layer, model.pack.text.hidden));
    });
    const resolved = feeds.map((f, i) => (f?.gate ? scaleFeed(f, scales[i]!) : f));
    if (gated.length === feeds.length && resolved.every((f) => f === undefined)) return { ...probe, feeds: resolved, scales, unrevised };
    return { ...(await DecodeBatch.prefillRows(model, prompts, lengths, resolved)), feeds: resolved, scales, unrevised };
  }

  /** Runs all prompts left-padded to the longest as one forward call (feeds already resolved: no gates). */
  private static async prefillRows(
    model: VlmModel,
    prompts: Float32Array[],
    lengths: number[],
    feeds: (RevisionFeed | undefined)[],
  ): Promise<{ batch: DecodeBatch; out: ForwardOutput; seq: number }> {
    if (model.decoderIo.cacheAlignment === 'left' && new Set(lengths).size > 1) return DecodeBatch.prefillByLength(model, prompts, lengths, feeds);
    const { layers, headDim, kvHeads } = model.pack.text;
    const hidden = model.hidden;
    const size = prompts.length;
    const seq = Math.max(...lengths);
    const embeds = new Float32Array(size * seq * hidden);
    const positions = new BigInt64Array(size * seq);
    const attention = new BigInt64Array(size * seq);
    const rows: BatchRow[] = lengths.map((n, r) => ({ feed: feeds[r], pad: seq - n, nextPosition: n }));
    rows.forEach((row, r) => {
      embeds.set(prompts[r], (r * seq + row.pad) * hidden);
      for (let p = 0; p < seq; p++) {
        const real = p >= row.pad;
        attention[r * seq + p] = real ? 1n : 0n;
        // transformers.js/HF: position = cumsum(mask) - 1, padding positions get 1.
        positions[r * seq + p] = BigInt(real ? p - row.pad : 1);
      }
    });
    const batch = new DecodeBatch(model, rows, KvCache.empty(layers, size, kvHeads, headDim, model.decoderIo.cache));
    const revision = batch.revision(seq, (r, p) => prefillMask(rows[r].feed!.positions, rows[r].pad, seq, p));
    const out = await model.forward({ batch: size, seq, embeds, attentionMask: attention, positionIds: positions, cache: batch.cacheState, revision });
    batch.cacheState = out.cache;
    return { batch, out, seq };
  }

  /**
   * Packed (GroupQueryAttention) rows of different lengths: each length prefills unpadded, and the rows join packed
   * from column 0. The output holds one position per row (its last), so `seq` is 1.
   */
  private static async prefillByLength(
    model: VlmModel,
    prompts: Float32Array[],
    lengths: number[],
    feeds: (RevisionFeed | undefined)[],
  ): Promise<{ batch: DecodeBatch; out: ForwardOutput; seq: number }> {
    const vocab = model.pack.text.vocabSize;
    const byLength = new Map<number, number[]>();
    lengths.forEach((n, i) => byLength.set(n, [...(byLength.get(n) ?? []), i]));
    const size = prompts.length;
    const logits = new Float32Array(size * vocab);
    const taps: (TapFrame | undefined)[] = new Array(size);
    const sources: GatherSource[] = new Array(size);
    for (const [n, members] of byLength) {
      const group = await DecodeBatch.prefillRows(
        model,
        members.map((i) => prompts[i]),
        members.map(() => n),
        members.map((i) => feeds[i]),
      );
      members.forEach((i, k) => {
        logits.set(group.out.logits.subarray((k * n + n - 1) * vocab, (k * n + n) * vocab), i * vocab);
        if (group.out.tapLayer) taps[i] = tapFrame(model, group.out, k);
        sources[i] = { cache: group.batch.cacheState, row: k, from: 0 };
      });
    }
    const length = Math.max(...lengths);
    const rows = lengths.map((n, i) => ({ feed: feeds[i], pad: length - n, nextPosition: n }));
    const batch = new DecodeBatch(model, rows, KvCache.gather(sources, length, 'left'));
    const joined = (pick: (t: TapFrame) => Float32Array) => (taps[0] ? concat(taps.map((t) => pick(t!))) : undefined);
    const out: ForwardOutput = { logits, cache: batch.cacheState, tapLayer: joined((t) => t.layer), tapHead: joined((t) => t.head) };
    return { batch, out, seq: 1 };
  }

  private get packed(): boolean {
    return this.model.decoderIo.cacheAlignment === 'left';
  }

  /** Row `r`'s own columns of the current cache, as a gather source. */
  private span(r: number): GatherSource {
    const { pad } = this.rows[r];
    const take = this.length - pad;
    return { cache: this.cacheState, row: r, from: this.packed ? 0 : pad, take };
  }

  /** `n` rows continuing one unpadded single-row cache (the candidates of a best-of-N fork). */
  static resume(model: VlmModel, cache: KvCache, nextPosition: number, feed: RevisionFeed | undefined, n: number): DecodeBatch {
    const rows = Array.from({ length: n }, () => ({ feed, pad: 0, nextPosition }));
    return new DecodeBatch(model, rows, n === 1 ? cache : cache.repeatRow(0, n));
  }

  private revision(seq: number, maskAt: (row: number, p: number) => number): RevisionInputs | undefined {
    const vectors = this.vectors();
    if (!vectors) return undefined;
    const mask = new Float32Array(this.size * seq);
    this.rows.forEach((row, r) => {
      if (!row.feed) return;
      for (let p = 0; p < seq; p++) mask[r * seq + p] = maskAt(r, p);
    });
    return { ...vectors, mask };
  }

  /** The rows' revision vectors, laid out once per membership (rows join and leave far less often than they step). */
  private vectors(): { layer: Float32Array; head: Float32Array } | null {
    if (this.revisionVectors !== undefined) return this.revisionVectors;
    if (!this.rows.some((r) => r.feed)) return (this.revisionVectors = null);
    const { layers, hidden, heads, headDim } = this.model.pack.text;
    const layerSize = layers * hidden;
    const headSize = layers * heads * headDim;
    const layer = new Float32Array(this.size * layerSize);
    const head = new Float32Array(this.size * headSize);
    this.rows.forEach((row, r) => {
      if (row.feed?.layer) layer.set(row.feed.layer, r * layerSize);
      if (row.feed?.head) head.set(row.feed.head, r * headSize);
    });
    return (this.revisionVectors = { layer, head });
  }

  /**
   * Feeds one token per row. Every position decoded after the prompt is revised (all three modes). `taps`: whether
   * the caller reads this step's taps (without them and without any revision the plain decoder runs).
   */
  async step(tokens: number[], taps = true): Promise<ForwardOutput> {
    const hidden = this.model.hidden;
    const size = this.size;
    const embeds = new Float32Array(size * hidden);
    await this.model.embedTokens(tokens, embeds, 0);
    const positions = new BigInt64Array(size);
    const width = this.cacheState.length + 1;
    const attention = new BigInt64Array(size * width);
    const packed = this.packed;
    this.rows.forEach((row, r) => {
      // Packed rows: ones over the row's own columns and the new one, so sum - 1 is the column GQA writes it to.
      if (packed) attention.fill(1n, r * width, (r + 1) * width - row.pad);
      else attention.fill(1n, r * width + row.pad, (r + 1) * width);
      positions[r] = BigInt(row.nextPosition++);
    });
    const revision = this.revision(1, () => 1);
    const out = await this.model.forward({
      batch: size,
      seq: 1,
      embeds,
      attentionMask: attention,
      positionIds: positions,
      cache: this.cacheState,
      revision,
      taps,
    });
    this.cacheState = out.cache;
    return out;
  }

  /** Appends `other`'s rows after this batch's (iteration-level batching: new rows join at a step boundary). */
  join(other: DecodeBatch): void {
    if (this.size === 0) {
      this.rows = other.rows;
      this.cacheState = other.cacheState;
      this.revisionVectors = undefined;
      return;
    }
    const length = Math.max(this.length, other.length);
    const sources = [...this.rows.map((_, r) => this.span(r)), ...other.rows.map((_, r) => other.span(r))];
    const grow = (batch: DecodeBatch) => batch.rows.map((row) => ({ ...row, pad: row.pad + length - batch.length }));
    this.rows = [...grow(this), ...grow(other)];
    this.cacheState = KvCache.gather(sources, length, this.model.decoderIo.cacheAlignment);
    this.revisionVectors = undefined;
  }

  /** Keeps only `indices` (in that order): finished rows leave, and columns no remaining row attends to are cut. */
  keep(indices: number[]): void {
    if (indices.length === this.size && indices.every((r, i) => r === i)) return;
    this.revisionVectors = undefined;
    if (indices.length === 0) {
      const { layers, headDim, kvHeads } = this.model.pack.text;
      this.rows = [];
      this.cacheState = KvCache.empty(layers, 0, kvHeads, headDim, this.model.decoderIo.cache);
      return;
    }
    const cut = Math.min(...indices.map((r) => this.rows[r].pad));
    const length = this.length - cut;
    this.cacheState = KvCache.gather(
      indices.map((r) => this.span(r)),
      length,
      this.model.decoderIo.cacheAlignment,
    );
    this.rows = indices.map((r) => ({ ...this.rows[r], pad: this.rows[r].pad - cut }));
  }

  /** Row `r`'s own positions as an unpadded single-row cache, its next position id and the feed it runs with. */
  takeRow(r: number): { cache: KvCache; nextPosition: number; feed?: RevisionFeed } {
    const span = this.span(r);
    return { cache: KvCache.gather([span], span.take!), nextPosition: this.rows[r].nextPosition, feed: this.rows[r].feed };
  }
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
