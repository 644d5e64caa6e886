/**
 * Re-expressing ETA's thresholds for another evaluator model. tau_pre = 0.16 is a cosine of CLIP ViT-L/14-336 and
 * tau_post = 0.06 a score of ArmoRM-Llama3-8B; neither number means anything on another model's scale. What can
 * be carried over is the threshold's position in a score distribution: score a reference set with the reference
 * evaluators, find the quantile tau falls at, and take the same quantile of the loaded model's scores on the same
 * set. Without the reference models, pick the quantile from the desired flag rate on benign data.
 */
import type { EtaEvaluator } from './eta-evaluator';

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

/**
 * Where no reference model is at hand (our own packs), fit the threshold on labelled calibration data: the
 * cut with the best balanced accuracy between the `flag` scores and the `pass` scores. `flagAbove` says which
 * side is flagged: CLIP image risk flags at or above tau_pre, the reward flags at or below tau_post.
 */
export function balancedThreshold(flag: readonly number[], pass: readonly number[], flagAbove: boolean): { tau: number; balancedAccuracy: number } {
  if (flag.length === 0 || pass.length === 0) throw new RangeError('a balanced threshold needs scores of both classes');
  const flagged = (s: number, tau: number) => (flagAbove ? s >= tau : s <= tau);
  // Cuts halfway between neighbouring scores: a separable set gets the widest margin, not a cut on a sample.
  const sorted = [...new Set([...flag, ...pass])].sort((a, b) => a - b);
  const cuts = sorted.slice(1).map((v, i) => (sorted[i] + v) / 2);
  let best = { tau: NaN, balancedAccuracy: -1 };
  for (const tau of cuts) {
    const acc = (flag.filter((s) => flagged(s, tau)).length / flag.length + pass.filter((s) => !flagged(s, tau)).length / pass.length) / 2;
    if (acc > best.balancedAccuracy) best = { tau, balancedAccuracy: acc };
  }
  return best;
}

export interface FittedEtaThresholds {
  tauPre: number;
  tauPost: number;
  /** Per harm category of the reward pack with positives in the calibration answers. */
  categoryThresholds: Record<string, number>;
  balancedAccuracy: { pre: number; post: number; categories: Record<string, number> };
}

/** A labelled calibration answer: unsafe or not, and the harm categories its content belongs to (empty when safe). */
export interface CalibrationAnswer {
  text: string;
  unsafe: boolean;
  categories?: readonly string[];
}

/**
 * tau_post from labelled answers (reward in the safety-specific format, scored as the product scores answers:
 * EtaEvaluator.scoreAnswers; unsafe answers should be flagged), tau_pre from labelled images (CLIP risk; risky
 * scenes should be flagged), and one threshold per harm category (the category's sigmoid score; answers of that
 * category should be flagged, every other answer not), each at its best balanced accuracy.
 */
export async function fitEtaThresholds(
  evaluator: Pick<EtaEvaluator, 'scoreAnswers' | 'imageRisks' | 'categoryLabels'>,
  data: { answers: CalibrationAnswer[]; images: { image: Uint8Array; risky: boolean }[] },
): Promise<FittedEtaThresholds> {
  const scored = await evaluator.scoreAnswers(data.answers.map((a) => a.text));
  const rewards = scored.map((s) => s.answer_safety);
  const categoryThresholds: Record<string, number> = {};
  const categoryAccuracy: Record<string, number> = {};
  for (const label of evaluator.categoryLabels()) {
    const member = data.answers.map((a) => a.categories?.includes(label) ?? false);
    if (!member.some(Boolean)) continue; // no answer of this category: its default threshold stays
    const fit = balancedThreshold(
      scored.filter((_, i) => member[i]).map((s) => s.category_scores[label]),
      scored.filter((_, i) => !member[i]).map((s) => s.category_scores[label]),
      true,
    );
    categoryThresholds[label] = fit.tau;
    categoryAccuracy[label] = fit.balancedAccuracy;
  }
  const risks = await evaluator.imageRisks(data.images.map((i) => i.image));
  const post = balancedThreshold(
    rewards.filter((_, i) => data.answers[i].unsafe),
    rewards.filter((_, i) => !data.answers[i].unsafe),
    false,
  );
  const pre = balancedThreshold(
    risks.filter((_, i) => data.images[i].risky),
    risks.filter((_, i) => !data.images[i].risky),
    true,
  );
  return {
    tauPre: pre.tau,
    tauPost: post.tau,
    categoryThresholds,
    balancedAccuracy: { pre: pre.balancedAccuracy, post: post.balancedAccuracy, categories: categoryAccuracy },
  };
}
