import type { SamplingOptions } from './types';

/** mulberry32: a small seeded PRNG, so a request's sampled tokens depend only on its own seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function argmax(logits: Float32Array, offset = 0, length = logits.length - offset): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < length; i++) {
    const v = logits[offset + i];
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

/** Indices of the k largest values, largest first. */
function topKIndices(values: Float32Array, offset: number, length: number, k: number): number[] {
  const idx: number[] = [];
  for (let i = 0; i < length; i++) {
    const v = values[offset + i];
    if (idx.length < k) {
      idx.push(i);
      if (idx.length === k) idx.sort((a, b) => values[offset + b] - values[offset + a]);
    } else if (v > values[offset + idx[k - 1]]) {
      let j = k - 1;
      while (j > 0 && values[offset + idx[j - 1]] < v) {
        idx[j] = idx[j - 1];
        j--;
      }
      idx[j] = i;
    }
  }
  if (idx.length < k) idx.sort((a, b) => values[offset + b] - values[offset + a]);
  return idx;
}

/**
 * Picks the next token from one row of logits: greedy when temperature is 0/absent, else
 * temperature -> top-k -> top-p (nucleus) -> a draw from `random`.
 */
export function pickToken(logits: Float32Array, offset: number, vocab: number, sampling: SamplingOptions | undefined, random: () => number): number {
  const temperature = sampling?.temperature ?? 0;
  if (!(temperature > 0)) return argmax(logits, offset, vocab);
  const k = Math.min(sampling?.topK && sampling.topK > 0 ? sampling.topK : vocab, vocab);
  const candidates = topKIndices(logits, offset, vocab, k);
  const max = logits[offset + candidates[0]];
  const weights = candidates.map((i) => Math.exp((logits[offset + i] - max) / temperature));
  let total = weights.reduce((s, w) => s + w, 0);
  const topP = sampling?.topP ?? 1;
  let keep = candidates.length;
  if (topP < 1) {
    let cumulative = 0;
    for (let i = 0; i < candidates.length; i++) {
      cumulative += weights[i] / total;
      if (cumulative >= topP) {
        keep = i + 1;
        break;
      }
    }
    total = weights.slice(0, keep).reduce((s, w) => s + w, 0);
  }
  let r = random() * total;
  for (let i = 0; i < keep; i++) {
    r -= weights[i];
    if (r <= 0) return candidates[i];
  }
  return candidates[keep - 1];
}
