import { describe, expect, it } from 'vitest';
import { cosine, massMeanShift, meanRow, normalize, probeWeightDirection, projectionStd, scaledVector } from '../src/directions';

describe('massMeanShift', () => {
  it('is the normalized difference of class means', () => {
    // mu+ = (2, 2), mu- = (-1, -2): difference (3, 4), norm 5.
    const pos = [
      [1, 2],
      [3, 2],
    ];
    const neg = [
      [-1, -1],
      [-1, -3],
    ];
    expect(Array.from(massMeanShift(pos, neg))).toEqual([0.6, 0.8]);
  });

  it('refuses identical class means (no direction)', () => {
    expect(() => massMeanShift([[1, 1]], [[1, 1]])).toThrow(/zero/);
  });
});

describe('projectionStd', () => {
  it('is the population std of all rows projected on the direction', () => {
    // Projections on (0.6, 0.8): 5, -5, 0, 0 -> mean 0, variance (25 + 25) / 4 = 12.5.
    const rows = [
      [3, 4],
      [-3, -4],
      [4, -3],
      [0, 0],
    ];
    expect(projectionStd(rows, [0.6, 0.8])).toBeCloseTo(Math.sqrt(12.5), 12);
  });
});

describe('scaledVector and helpers', () => {
  it('scales the unit direction by alpha * sigma', () => {
    expect(Array.from(scaledVector([0.6, 0.8], 2, 5))).toEqual([6, 8]);
  });
  it('normalize / cosine / meanRow', () => {
    expect(Array.from(normalize([0, 3, 4]))).toEqual([0, 0.6, 0.8]);
    expect(cosine([1, 0], [1, 1])).toBeCloseTo(Math.SQRT1_2, 12);
    expect(
      Array.from(
        meanRow([
          [1, 2],
          [3, 6],
        ]),
      ),
    ).toEqual([2, 4]);
    expect(() => normalize([0, 0])).toThrow(RangeError);
  });
});

describe('probeWeightDirection', () => {
  it('follows the symmetry of the data: classes split along x only', () => {
    const pos = [
      [2, 1],
      [2, -1],
    ];
    const neg = [
      [-2, 1],
      [-2, -1],
    ];
    const d = probeWeightDirection(pos, neg);
    expect(d[0]).toBeCloseTo(1, 8);
    expect(d[1]).toBeCloseTo(0, 8);
  });

  it('points toward the positive class', () => {
    const d = probeWeightDirection([[0, -3]], [[0, 3]]);
    expect(d[1]).toBeCloseTo(-1, 8);
  });
});
