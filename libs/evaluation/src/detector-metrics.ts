/**
 * Threshold-free quality of a detector score (the hidden-state detector, CLIP's image risk, the reward pack's answer
 * score): AUROC and the true-positive rate at a fixed false-positive budget, the two numbers HiddenDetect and the
 * moderation literature report. Scores are "higher = more likely positive"; negate a "higher = safer" score first.
 */

/** The false-positive budget `tprAt1pctFpr` is read at. @defaultValue 0.01 */
export const DETECTOR_TARGET_FPR = 0.01;

export interface DetectorMetrics {
  /** P(score of a random positive > score of a random negative), ties counted one half (Mann-Whitney U / (P N)). */
  auroc: number;
  /** Largest TPR of a threshold `score >= t` whose FPR is at most 1% (no interpolation between ROC points). */
  tprAt1pctFpr: number;
  /** The threshold that TPR is reached at (Infinity when no threshold keeps the FPR within budget but +Infinity). */
  thresholdAt1pctFpr: number;
  positives: number;
  negatives: number;
}

export interface RocPoint {
  /** Flag when score >= threshold. */
  threshold: number;
  tpr: number;
  fpr: number;
}

function split(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>): { pos: number[]; neg: number[] } {
  if (scores.length !== labels.length) throw new RangeError(`${scores.length} scores for ${labels.length} labels`);
  const pos: number[] = [];
  const neg: number[] = [];
  for (let i = 0; i < scores.length; i++) {
    if (Number.isNaN(scores[i])) throw new RangeError(`score ${i} is NaN`);
    (labels[i] ? pos : neg).push(scores[i]);
  }
  return { pos, neg };
}

/** Mann-Whitney AUROC by average ranks: O(n log n), exact with ties (each tied pair counts 1/2). NaN without both classes. */
export function auroc(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>): number {
  const { pos, neg } = split(scores, labels);
  if (pos.length === 0 || neg.length === 0) return NaN;
  const all = [...pos.map((s) => ({ s, p: 1 })), ...neg.map((s) => ({ s, p: 0 }))].sort((a, b) => a.s - b.s);
  // Sum of the positives' ranks (1-based), tied groups sharing their average rank.
  let rankSum = 0;
  for (let i = 0; i < all.length;) {
    let j = i;
    while (j + 1 < all.length && all[j + 1].s === all[i].s) j++;
    const avgRank = (i + 1 + (j + 1)) / 2;
    for (let k = i; k <= j; k++) if (all[k].p) rankSum += avgRank;
    i = j + 1;
  }
  const u = rankSum - (pos.length * (pos.length + 1)) / 2;
  return u / (pos.length * neg.length);
}

/** The ROC curve's corners, from the strictest threshold (+Infinity: nothing flagged) down to the loosest. */
export function rocPoints(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>): RocPoint[] {
  const { pos, neg } = split(scores, labels);
  const all = [...pos.map((s) => ({ s, p: 1 })), ...neg.map((s) => ({ s, p: 0 }))].sort((a, b) => b.s - a.s);
  const points: RocPoint[] = [{ threshold: Infinity, tpr: 0, fpr: 0 }];
  let tp = 0;
  let fp = 0;
  // Sweep from the highest score down; a tied group enters at once (a threshold cannot split equal scores).
  for (let i = 0; i < all.length;) {
    const t = all[i].s;
    for (; i < all.length && all[i].s === t; i++) {
      if (all[i].p) tp++;
      else fp++;
    }
    points.push({ threshold: t, tpr: pos.length ? tp / pos.length : NaN, fpr: neg.length ? fp / neg.length : NaN });
  }
  return points;
}

/** The ROC point with the largest TPR whose FPR is within `targetFpr` (the strictest such threshold on ties). */
export function tprAtFpr(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>, targetFpr = DETECTOR_TARGET_FPR): RocPoint {
  let best: RocPoint = { threshold: Infinity, tpr: 0, fpr: 0 };
  // A tiny slack so a budget of exactly k/N negatives is met despite float rounding of k/N.
  for (const p of rocPoints(scores, labels)) if (p.fpr <= targetFpr + 1e-12 && p.tpr > best.tpr) best = p;
  return best;
}

export function detectorMetrics(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>, targetFpr = DETECTOR_TARGET_FPR): DetectorMetrics {
  const { pos, neg } = split(scores, labels);
  const at = tprAtFpr(scores, labels, targetFpr);
  return { auroc: auroc(scores, labels), tprAt1pctFpr: at.tpr, thresholdAt1pctFpr: at.threshold, positives: pos.length, negatives: neg.length };
}
