import { Tensor } from 'onnxruntime-node';

/**
 * The decoder's key/value cache: per layer a key and a value tensor of [batch, kvHeads, length, headDim],
 * exactly the `present.N.*` outputs of the last call, fed back as `past_key_values.N.*`.
 */
export class KvCache {
  private constructor(
    readonly tensors: Tensor[],
    readonly batch: number,
    readonly length: number,
    readonly kvHeads: number,
    readonly headDim: number,
  ) {}

  static empty(layers: number, batch: number, kvHeads: number, headDim: number): KvCache {
    const tensors = Array.from({ length: 2 * layers }, () => new Tensor('float32', new Float32Array(0), [batch, kvHeads, 0, headDim]));
    return new KvCache(tensors, batch, 0, kvHeads, headDim);
  }

  static fromPresent(tensors: Tensor[], kvHeads: number, headDim: number): KvCache {
    const [batch, , length] = tensors[0].dims as number[];
    return new KvCache(tensors, batch, length, kvHeads, headDim);
  }

  /**
   * A new cache whose row i is `sources[i].cache`'s row `sources[i].row` from position `from` on, right-aligned to
   * `length` (left-padded with zeros). This is how continuous batching joins rows of different lengths into one
   * batch, drops finished rows, and trims leading columns every remaining row masks out; the padding is masked
   * by the attention mask, so a row's attention sees exactly its own positions wherever it sits.
   */
  static gather(sources: readonly { cache: KvCache; row: number; from: number }[], length: number): KvCache {
    const first = sources[0].cache;
    const { kvHeads, headDim: d } = first;
    const n = sources.length;
    const tensors = first.tensors.map((_, t) => {
      const out = new Float32Array(n * kvHeads * length * d);
      sources.forEach(({ cache, row, from }, i) => {
        const src = cache.tensors[t].data as Float32Array;
        const take = cache.length - from;
        if (take > length) throw new RangeError(`row of ${take} positions does not fit a cache of ${length}`);
        for (let h = 0; h < kvHeads; h++) {
          const at = ((row * kvHeads + h) * cache.length + from) * d;
          out.set(src.subarray(at, at + take * d), ((i * kvHeads + h) * length + length - take) * d);
        }
      });
      return new Tensor('float32', out, [n, kvHeads, length, d]);
    });
    return new KvCache(tensors, n, length, kvHeads, d);
  }

  /** `n` copies of one row: candidates of best-of-N share the prefix's cache instead of recomputing it. */
  repeatRow(row: number, n: number): KvCache {
    const rowSize = this.kvHeads * this.length * this.headDim;
    const tensors = this.tensors.map((t) => {
      const src = (t.data as Float32Array).subarray(row * rowSize, (row + 1) * rowSize);
      const out = new Float32Array(n * rowSize);
      for (let j = 0; j < n; j++) out.set(src, j * rowSize);
      return new Tensor('float32', out, [n, this.kvHeads, this.length, this.headDim]);
    });
    return new KvCache(tensors, n, this.length, this.kvHeads, this.headDim);
  }

  /** One row, cut to its first `length` positions (rows of a candidate batch end at different lengths). */
  takeRow(row: number, length: number): KvCache {
    const d = this.headDim;
    const tensors = this.tensors.map((t) => {
      const src = t.data as Float32Array;
      const out = new Float32Array(this.kvHeads * length * d);
      for (let h = 0; h < this.kvHeads; h++) {
        const from = (row * this.kvHeads + h) * this.length * d;
        out.set(src.subarray(from, from + length * d), h * length * d);
      }
      return new Tensor('float32', out, [1, this.kvHeads, length, d]);
    });
    return new KvCache(tensors, 1, length, this.kvHeads, this.headDim);
  }
}
