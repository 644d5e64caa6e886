/**
 * Re-expressing ETA's thresholds for another evaluator model. tau_pre = 0.16 is a cosine of CLIP ViT-L/14-336 and
 * tau_post = 0.06 a score of ArmoRM-Llama3-8B; neither number means anything on another model's scale. What can
 * be carried over is the threshold's position in a score distribution: score a reference set with the reference
 * evaluators, find the quantile tau falls at, and take the same quantile of the loaded model's scores on the same
 * set. Without the reference models, pick the quantile from the desired flag rate on benign data.
 */

/** Linear-interpolated quantile (numpy's default 'linear' method), q in [0, 1]. */
export function quantile(scores: readonly number[], q: number): number {
  if (scores.length === 0) throw new RangeError('quantile of no scores');
  if (!(q >= 0 && q <= 1)) throw new RangeError('q must be in [0, 1]');
  const s = [...scores].sort((a, b) => a - b);
  const pos = q * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

/** Fraction of `scores` strictly below `threshold`: where a threshold sits in a distribution. */
export function quantileOf(scores: readonly number[], threshold: number): number {
  if (scores.length === 0) throw new RangeError('quantile of no scores');
  return scores.filter((s) => s < threshold).length / scores.length;
}

/**
 * The threshold on `targetScores` that sits at the same quantile as `referenceThreshold` does on
 * `referenceScores` (both scored on the same inputs).
 */
export function transferThreshold(referenceScores: readonly number[], referenceThreshold: number, targetScores: readonly number[]): number {
  return quantile(targetScores, quantileOf(referenceScores, referenceThreshold));
}
