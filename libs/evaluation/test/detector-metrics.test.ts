/**
 * detectorMetrics against values counted by hand (pairs for the AUROC, flagged counts for the TPR at 1% FPR).
 */
import { describe, expect, it } from 'vitest';
import { auroc, detectorMetrics, rocPoints, tprAtFpr } from '../src/detector-metrics';

describe('detectorMetrics', () => {
  it('counts ties one half (Mann-Whitney) and reads the TPR with no false positive allowed among 5 negatives', () => {
    // Positives 0.9, 0.8, 0.4, 0.4; negatives 0.7, 0.4, 0.2, 0.1, 0.05. Pairs won: 0.9 -> 5, 0.8 -> 5,
    // each 0.4 -> 3 wins + 1 tie = 3.5. (5 + 5 + 3.5 + 3.5) / 20 = 0.85.
    const scores = [0.9, 0.7, 0.8, 0.4, 0.4, 0.2, 0.4, 0.1, 0.05];
    const labels = [1, 0, 1, 1, 0, 0, 1, 0, 0];
    const m = detectorMetrics(scores, labels);
    expect(m.auroc).toBeCloseTo(0.85, 12);
    // 1% of 5 negatives is 0: the loosest threshold with no negative above is 0.8, which flags 2 of 4 positives.
    expect(m.tprAt1pctFpr).toBe(0.5);
    expect(m.thresholdAt1pctFpr).toBe(0.8);
    expect([m.positives, m.negatives]).toEqual([4, 5]);
  });

  it('allows one false positive among 100 negatives', () => {
    // Negatives 0.00 ... 0.99; positives 0.985, 0.975, 0.5.
    const neg = Array.from({ length: 100 }, (_, i) => i / 100);
    const pos = [0.985, 0.975, 0.5];
    const m = detectorMetrics([...neg, ...pos], [...neg.map(() => 0), ...pos.map(() => 1)]);
    // Pairs won: 0.985 beats 99 negatives, 0.975 beats 98, 0.5 beats 50 and ties 1: 247.5 / 300.
    expect(m.auroc).toBeCloseTo(247.5 / 300, 12);
    // t = 0.985 flags one negative (0.99, FPR 1%) and one positive; t = 0.98 would flag two negatives.
    expect(m.tprAt1pctFpr).toBeCloseTo(1 / 3, 12);
    expect(m.thresholdAt1pctFpr).toBe(0.985);
  });

  it('gives 0.5 and no TPR when every score ties, and NaN without both classes', () => {
    expect(auroc([0.3, 0.3, 0.3, 0.3], [true, false, true, false])).toBe(0.5);
    expect(tprAtFpr([0.3, 0.3], [1, 0]).tpr).toBe(0);
    expect(auroc([0.1, 0.2], [1, 1])).toBeNaN();
    expect(() => auroc([0.1, NaN], [1, 0])).toThrow(RangeError);
  });

  it('lists the ROC corners from nothing flagged to everything flagged, ties entering together', () => {
    expect(rocPoints([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0])).toEqual([
      { threshold: Infinity, tpr: 0, fpr: 0 },
      { threshold: 0.9, tpr: 0.5, fpr: 0 },
      { threshold: 0.5, tpr: 1, fpr: 0.5 },
      { threshold: 0.1, tpr: 1, fpr: 1 },
    ]);
  });
});
