import { KvCache } from './kv-cache';
import type { ForwardOutput, RevisionInputs, VlmModel } from './vlm-model';
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
}

/** One row of a batch: its revision, how many leading cache columns it masks out, and its next position id. */
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

  /** Runs all prompts left-padded to the longest as one forward call. */
  static async prefill(
    model: VlmModel,
    prompts: Float32Array[],
    lengths: number[],
    feeds: (RevisionFeed | undefined)[],
  ): Promise<{ batch: DecodeBatch; out: ForwardOutput; seq: number }> {
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
    const batch = new DecodeBatch(model, rows, KvCache.empty(layers, size, kvHeads, headDim));
    const revision = batch.revision(seq, (r, p) => prefillMask(rows[r].feed!.positions, rows[r].pad, seq, p));
    const out = await model.forward({ batch: size, seq, embeds, attentionMask: attention, positionIds: positions, cache: batch.cacheState, revision });
    batch.cacheState = out.cache;
    return { batch, out, seq };
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

  /** Feeds one token per row. Every position decoded after the prompt is revised (all three modes). */
  async step(tokens: number[]): Promise<ForwardOutput> {
    const hidden = this.model.hidden;
    const size = this.size;
    const embeds = new Float32Array(size * hidden);
    await this.model.embedTokens(tokens, embeds, 0);
    const positions = new BigInt64Array(size);
    const width = this.cacheState.length + 1;
    const attention = new BigInt64Array(size * width);
    this.rows.forEach((row, r) => {
      attention.fill(1n, r * width + row.pad, (r + 1) * width);
      positions[r] = BigInt(row.nextPosition++);
    });
    const revision = this.revision(1, () => 1);
    const out = await this.model.forward({ batch: size, seq: 1, embeds, attentionMask: attention, positionIds: positions, cache: this.cacheState, revision });
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
    const sources = [
      ...this.rows.map((_, r) => ({ cache: this.cacheState, row: r, from: 0 })),
      ...other.rows.map((_, r) => ({ cache: other.cacheState, row: r, from: 0 })),
    ];
    const grow = (batch: DecodeBatch) => batch.rows.map((row) => ({ ...row, pad: row.pad + length - batch.length }));
    this.rows = [...grow(this), ...grow(other)];
    this.cacheState = KvCache.gather(sources, length);
    this.revisionVectors = undefined;
  }

  /** Keeps only `indices` (in that order): finished rows leave, and columns no remaining row attends to are cut. */
  keep(indices: number[]): void {
    if (indices.length === this.size && indices.every((r, i) => r === i)) return;
    this.revisionVectors = undefined;
    if (indices.length === 0) {
      const { layers, headDim, kvHeads } = this.model.pack.text;
      this.rows = [];
      this.cacheState = KvCache.empty(layers, 0, kvHeads, headDim);
      return;
    }
    const cut = Math.min(...indices.map((r) => this.rows[r].pad));
    const length = this.length - cut;
    this.cacheState = KvCache.gather(
      indices.map((r) => ({ cache: this.cacheState, row: r, from: cut })),
      length,
    );
    this.rows = indices.map((r) => ({ ...this.rows[r], pad: this.rows[r].pad - cut }));
  }

  /** Row `r`'s own positions as an unpadded single-row cache, and its next position id. */
  takeRow(r: number): { cache: KvCache; nextPosition: number } {
    const row = this.rows[r];
    return { cache: KvCache.gather([{ cache: this.cacheState, row: r, from: row.pad }], this.length - row.pad), nextPosition: row.nextPosition };
  }
}
