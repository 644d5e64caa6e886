import { Tensor } from 'onnxruntime-node';

/**
 * Element type of the cache tensors, as the decoder declares `past_key_values.*`. A float16 cache stays float16 (raw
 * bits in a Uint16Array, as onnxruntime-node takes float16): the cache is only ever copied, never computed on here, so
 * converting it every step would cost time and buy nothing.
 */
export type CacheElementType = 'float32' | 'float16';

type CacheData = Float32Array | Uint16Array;

function allocate(type: CacheElementType, n: number): CacheData {
  return type === 'float16' ? new Uint16Array(n) : new Float32Array(n);
}

/**
 * Where a row's positions sit in the cache columns. 'right': right-aligned, the leading columns masked out (left
 * padding, what HF and transformers.js do with explicit position_ids). 'left': packed from column 0, the trailing
 * columns unused (right padding, what GroupQueryAttention expects: it reads a row's valid length from seqlens_k and
 * writes the new token's key/value at that column, ignoring the mask's layout).
 */
export type CacheAlignment = 'right' | 'left';

/** One row of a gathered cache: `cache`'s row `row`, `take` positions from column `from` (default: to the end). */
export interface GatherSource {
  cache: KvCache;
  row: number;
  from: number;
  take?: number;
}

/**
 * The decoder's key/value cache: per layer a key and a value tensor of [batch, kvHeads, length, headDim],
 * exactly the `present.N.*` outputs of the last call, fed back as `past_key_values.N.*`.
 *
 * Why the outputs are taken as onnxruntime returns them (issue 15, item 1): onnxruntime-node 1.30 has no IO binding,
 * but it does take preallocated outputs (`session.run(feeds, fetches)` writes `present` into JS memory it is handed).
 * Decode steps writing into two alternating preallocated buffers gave the same tokens in every shipped layout and
 * no measurable gain on factory-vlm (interleaved, median of 7: 0.969x batch 1, 1.001x batch 32 x 128 tokens, 1.017x
 * batch 32 x 400), so it was not kept: the copy a step pays is the graph's own Concat(past, new) into `present`, which
 * only an attention op that shares one past/present buffer (GroupQueryAttention's) removes.
 */
export class KvCache {
  private constructor(
    readonly tensors: Tensor[],
    readonly batch: number,
    readonly length: number,
    readonly kvHeads: number,
    readonly headDim: number,
    readonly type: CacheElementType,
  ) {}

  static empty(layers: number, batch: number, kvHeads: number, headDim: number, type: CacheElementType = 'float32'): KvCache {
    const tensors = Array.from({ length: 2 * layers }, () => new Tensor(type, allocate(type, 0), [batch, kvHeads, 0, headDim]));
    return new KvCache(tensors, batch, 0, kvHeads, headDim, type);
  }

  static fromPresent(tensors: Tensor[], kvHeads: number, headDim: number): KvCache {
    const [batch, , length] = tensors[0].dims as number[];
    return new KvCache(tensors, batch, length, kvHeads, headDim, tensors[0].type === 'float16' ? 'float16' : 'float32');
  }

  /**
   * A new cache whose row i is `sources[i]`'s positions, aligned to `length` columns: right-aligned (left-padded with
   * zeros) by default, or packed from column 0 (`align` 'left'). This is how continuous batching joins rows of
   * different lengths into one batch, drops finished rows, and trims columns every remaining row masks out; the
   * padding is masked by the attention mask (or, left-aligned, lies past the row's seqlens_k), so a row's attention
   * sees exactly its own positions wherever it sits.
   */
  static gather(sources: readonly GatherSource[], length: number, align: CacheAlignment = 'right'): KvCache {
    const first = sources[0].cache;
    const { kvHeads, headDim: d, type } = first;
    const n = sources.length;
    const tensors = first.tensors.map((_, t) => {
      const out = allocate(type, n * kvHeads * length * d);
      sources.forEach(({ cache, row, from, take = cache.length - from }, i) => {
        const src = cache.tensors[t].data as CacheData;
        if (take > length) throw new RangeError(`row of ${take} positions does not fit a cache of ${length}`);
        const to = align === 'right' ? length - take : 0;
        for (let h = 0; h < kvHeads; h++) {
          const at = ((row * kvHeads + h) * cache.length + from) * d;
          out.set(src.subarray(at, at + take * d), ((i * kvHeads + h) * length + to) * d);
        }
      });
      return new Tensor(type, out, [n, kvHeads, length, d]);
    });
    return new KvCache(tensors, n, length, kvHeads, d, type);
  }

  /** `n` copies of one row: candidates of best-of-N share the prefix's cache instead of recomputing it. */
  repeatRow(row: number, n: number): KvCache {
    const rowSize = this.kvHeads * this.length * this.headDim;
    const tensors = this.tensors.map((t) => {
      const src = (t.data as CacheData).subarray(row * rowSize, (row + 1) * rowSize);
      const out = allocate(this.type, n * rowSize);
      for (let j = 0; j < n; j++) out.set(src, j * rowSize);
      return new Tensor(this.type, out, [n, this.kvHeads, this.length, this.headDim]);
    });
    return new KvCache(tensors, n, this.length, this.kvHeads, this.headDim, this.type);
  }
}
