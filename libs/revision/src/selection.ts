/**
 * Which layers or heads to revise. ITI ranks heads by the held-out accuracy of a linear probe; HSI shows that
 * probe accuracy is a weak guide to which heads matter causally and ranks by the effect of revising one head
 * alone. Both rankings are offered; the causal effect is measured by the caller (it needs the runtime), see
 * calibration.ts.
 */
import { massMeanShift, normalize, probeWeightDirection, projectionStd, type Row } from './directions';
import { probeAccuracy, trainLogisticProbe, type ProbeOptions } from './probe';
import { seededRandom } from '@libs/vlm';
import type { Unit } from './layout';

export type DirectionMethod = 'mms' | 'pwd';

export interface HoldoutSplit {
  train: number[];
  holdout: number[];
}

/**
 * Stratified split: each class contributes round(fraction * count) samples to the holdout, at least one when the
 * class has two or more, so probe accuracy is never measured on one class only.
 */
export function stratifiedSplit(classes: ArrayLike<number>, fraction: number, seed: number): HoldoutSplit {
  if (!(fraction > 0 && fraction < 1)) throw new RangeError('holdout fraction must be in (0, 1)');
  const rand = seededRandom(seed);
  const train: number[] = [];
  const holdout: number[] = [];
  for (const cls of [1, 0]) {
    const idx: number[] = [];
    for (let i = 0; i < classes.length; i++) if ((classes[i] ? 1 : 0) === cls) idx.push(i);
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
    let k = Math.round(fraction * idx.length);
    if (idx.length >= 2) k = Math.min(Math.max(k, 1), idx.length - 1);
    else k = 0;
    holdout.push(...idx.slice(0, k));
    train.push(...idx.slice(k));
  }
  return { train: train.sort((a, b) => a - b), holdout: holdout.sort((a, b) => a - b) };
}

export function computeDirection(method: DirectionMethod, positive: readonly Row[], negative: readonly Row[], probe: ProbeOptions = {}): Float64Array {
  return method === 'mms' ? massMeanShift(positive, negative) : probeWeightDirection(positive, negative, probe);
}

export function byClass(rows: readonly Row[], classes: ArrayLike<number>, indexes: readonly number[]): { positive: Row[]; negative: Row[] } {
  const positive: Row[] = [];
  const negative: Row[] = [];
  for (const i of indexes) (classes[i] ? positive : negative).push(rows[i]);
  return { positive, negative };
}

export interface UnitScore {
  unit: Unit;
  /** Direction from the training split (used for ranking and causal tests). */
  trainDirection: Float64Array;
  /** Direction from all samples (what the artifact stores). */
  direction: Float64Array;
  /** Std of all samples projected on `direction`. */
  sigma: number;
  /** Accuracy on the holdout split of a probe trained on the training split. */
  probeAccuracy: number;
  /**
   * Signed separation of the holdout classes along `trainDirection`: (mean positive - mean negative) / pooled std.
   * Breaks probe-accuracy ties: on a small trained model every layer separates the classes perfectly, and without
   * a margin the first layer in layout order always won.
   */
  separation: number;
  /** Change in the behaviour score when this unit alone is revised; set by the causal pass. */
  causalEffect?: number;
  /** Judged generation with this unit alone revised; set by `selectByGeneration` (causal-selection.ts, issue 12 item 2). */
  generation?: GenerationEffect;
}

/** What revising one unit alone did to judged generation on the calibration eval items (fractions). */
export interface GenerationEffect {
  /** ASR drop per unit of benign-accuracy loss: (ASR_base - ASR) / max(benignAcc_base - benignAcc, floor). */
  score: number;
  /** Image+harmful ASR with the unit revised. */
  asr: number;
  benignAccuracy: number;
  overRefusal: number;
}

/** Direction, sigma and held-out probe accuracy for one unit. */
export function scoreUnit(
  unit: Unit,
  rows: readonly Row[],
  classes: ArrayLike<number>,
  split: HoldoutSplit,
  method: DirectionMethod,
  probe: ProbeOptions = {},
): UnitScore {
  const train = byClass(rows, classes, split.train);
  const trainLabels = [...train.positive.map(() => 1), ...train.negative.map(() => 0)];
  const trainedProbe = trainLogisticProbe([...train.positive, ...train.negative], trainLabels, probe);
  const holdoutRows = split.holdout.map((i) => rows[i]);
  const holdoutLabels = split.holdout.map((i) => (classes[i] ? 1 : 0));
  // For PWD the ranking probe is the direction's probe: train it once.
  const trainDirection = method === 'pwd' ? normalize(trainedProbe.weights) : massMeanShift(train.positive, train.negative);
  const all = byClass(rows, classes, [...split.train, ...split.holdout]);
  const direction = computeDirection(method, all.positive, all.negative, probe);
  return {
    unit,
    trainDirection,
    direction,
    sigma: projectionStd(rows, direction),
    probeAccuracy: probeAccuracy(trainedProbe, holdoutRows, holdoutLabels),
    separation: holdoutSeparation(trainDirection, holdoutRows, holdoutLabels),
  };
}

/** (mean positive - mean negative) / pooled std of the rows projected on `direction`; 0 when a class is empty. */
export function holdoutSeparation(direction: ArrayLike<number>, rows: readonly Row[], labels: ArrayLike<number>): number {
  const scores = rows.map((row) => {
    let p = 0;
    for (let d = 0; d < direction.length; d++) p += row[d] * direction[d];
    return p;
  });
  return classSeparation(scores, labels);
}

/** (mean positive - mean negative) / pooled std of scalar scores by class; 0 when a class is empty. */
export function classSeparation(scores: readonly number[], labels: ArrayLike<number>): number {
  const pos = scores.filter((_, i) => labels[i]);
  const neg = scores.filter((_, i) => !labels[i]);
  if (!neg.length || !pos.length) return 0;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const variance = (xs: number[], m: number) => xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length;
  const [mp, mn] = [mean(pos), mean(neg)];
  const pooled = Math.sqrt((variance(pos, mp) + variance(neg, mn)) / 2);
  return pooled > 0 ? (mp - mn) / pooled : Math.sign(mp - mn) * Infinity;
}

export type RankingCriterion = 'probe-accuracy' | 'causal-effect' | 'generation-effect';

/**
 * Best first. Ties (common on small holdouts, where accuracy takes few values) are broken by the other
 * criterion (probe accuracy for both causal criteria), then by holdout separation, then by layout order, so a
 * ranking is deterministic. Units without a measured causal or generation score rank below every measured one.
 */
export function rankUnits(scores: readonly UnitScore[], by: RankingCriterion): UnitScore[] {
  const causal = (s: UnitScore) => s.causalEffect ?? -Infinity;
  const generation = (s: UnitScore) => s.generation?.score ?? -Infinity;
  const order = (s: UnitScore) => s.unit.layer * 1e6 + (s.unit.head ?? 0);
  const decided = (x: number) => x !== 0 && !Number.isNaN(x);
  return [...scores].sort((a, b) => {
    if (by === 'generation-effect') {
      const g = generation(b) - generation(a);
      if (decided(g)) return g;
      const p = b.probeAccuracy - a.probeAccuracy;
      if (decided(p)) return p;
      const m = b.separation - a.separation;
      return decided(m) ? m : order(a) - order(b);
    }
    const primary = by === 'causal-effect' ? causal(b) - causal(a) : b.probeAccuracy - a.probeAccuracy;
    if (decided(primary)) return primary;
    const secondary = by === 'causal-effect' ? b.probeAccuracy - a.probeAccuracy : causal(b) - causal(a);
    if (decided(secondary)) return secondary;
    const margin = b.separation - a.separation;
    if (decided(margin)) return margin;
    return order(a) - order(b);
  });
}

export function selectTopK(ranked: readonly UnitScore[], k: number): UnitScore[] {
  if (!(Number.isInteger(k) && k >= 1)) throw new RangeError('top-k must be a positive integer');
  return ranked.slice(0, k);
}
