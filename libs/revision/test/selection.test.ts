import { describe, expect, it } from 'vitest';
import { generationScore } from '../src/causal-selection';
import { holdoutSeparation, rankUnits, type UnitScore } from '../src/selection';

const score = (layer: number, probeAccuracy: number, separation: number, causalEffect?: number): UnitScore => ({
  unit: { layer },
  trainDirection: new Float64Array(2),
  direction: new Float64Array(2),
  sigma: 1,
  probeAccuracy,
  separation,
  ...(causalEffect === undefined ? {} : { causalEffect }),
});

describe('holdoutSeparation', () => {
  it('is the difference of class means over the pooled std, by hand', () => {
    // positive projections 2, 4 (mean 3, variance 1); negative 0, -2 (mean -1, variance 1): (3 - -1) / 1 = 4
    const rows = [
      [2, 9],
      [4, -9],
      [0, 5],
      [-2, 7],
    ];
    expect(holdoutSeparation([1, 0], rows, [1, 1, 0, 0])).toBeCloseTo(4, 12);
    // a direction pointing the wrong way separates negatively
    expect(holdoutSeparation([-1, 0], rows, [1, 1, 0, 0])).toBeCloseTo(-4, 12);
    expect(holdoutSeparation([1, 0], rows, [1, 1, 1, 1])).toBe(0);
  });
});

describe('rankUnits', () => {
  it('breaks probe-accuracy ties by separation, not by layout order', () => {
    const ranked = rankUnits([score(0, 1, 2), score(1, 1, 5), score(2, 0.9, 50), score(3, 1, 3)], 'probe-accuracy');
    expect(ranked.map((s) => s.unit.layer)).toEqual([1, 3, 0, 2]);
  });

  it('ranks by the generation score; ties by probe accuracy then separation; unmeasured units last (issue 12 item 2)', () => {
    const gen = (s: UnitScore, g: number): UnitScore => ({ ...s, generation: { score: g, asr: 0, benignAccuracy: 1, overRefusal: 0 } });
    const ranked = rankUnits(
      [gen(score(0, 1, 9), 0), gen(score(1, 0.9, 1), 0), score(2, 1, 50), gen(score(3, 0.5, 0), 42), gen(score(4, 1, 1), 0)],
      'generation-effect',
    );
    expect(ranked.map((s) => s.unit.layer)).toEqual([3, 0, 4, 1, 2]);
    expect(generationScore(0.5, -0.2)).toBeCloseTo(50, 12);
    expect(generationScore(0.5, 0.25)).toBeCloseTo(2, 12);
    expect(generationScore(-0.1, 0.5)).toBeCloseTo(-0.2, 12);
  });

  it('keeps the causal effect ahead of separation when ranking causally', () => {
    const ranked = rankUnits([score(0, 1, 9, 0.1), score(1, 1, 1, 0.3), score(2, 1, 5, 0.3)], 'causal-effect');
    expect(ranked.map((s) => s.unit.layer)).toEqual([2, 1, 0]);
  });

  it('falls back to layout order when everything ties', () => {
    expect(rankUnits([score(2, 1, 1), score(0, 1, 1)], 'probe-accuracy').map((s) => s.unit.layer)).toEqual([0, 2]);
  });
});
