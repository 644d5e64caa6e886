import { describe, expect, it } from 'vitest';
import { probeAccuracy, probeProbability, trainLogisticProbe, type LogisticProbe } from '../src/probe';

/** Root of f on [lo, hi] by bisection: an independent solver for the closed-form stationarity condition. */
function bisect(f: (x: number) => number, lo: number, hi: number): number {
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (Math.sign(f(mid)) === Math.sign(f(lo))) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

describe('trainLogisticProbe', () => {
  it('solves the 1-D symmetric case: w = 2C * sigmoid(-w), bias 0', () => {
    // J(w) = 2 log(1 + e^-w) + w^2 / (2C); dJ/dw = 0  <=>  w = 2C sigmoid(-w).
    for (const c of [1, 0.1, 10]) {
      const probe = trainLogisticProbe([[1], [-1]], [1, 0], { c });
      const expected = bisect((w) => w - 2 * c * sigmoid(-w), 0, 50);
      expect(probe.converged).toBe(true);
      expect(probe.weights[0]).toBeCloseTo(expected, 6);
      expect(probe.bias).toBeCloseTo(0, 6);
    }
    // For C = 1 the root is 0.67487... (by hand: 0.675 - 2 / (1 + e^0.675) = 0.0002).
    expect(trainLogisticProbe([[1], [-1]], [1, 0]).weights[0]).toBeCloseTo(0.6749, 3);
  });

  it('does not penalize the bias: an all-shifted copy gets the same weight and a compensating bias', () => {
    const probe = trainLogisticProbe([[11], [9]], [1, 0]);
    const reference = trainLogisticProbe([[1], [-1]], [1, 0]);
    expect(probe.weights[0]).toBeCloseTo(reference.weights[0], 5);
    expect(probe.bias).toBeCloseTo(-10 * reference.weights[0], 4);
  });

  it('reaches a stationary point on a 3-D problem (gradient ~ 0)', () => {
    const rows = [
      [1, 2, 0.5],
      [2, 0, 1],
      [0.5, 1, -1],
      [-1, -2, 0],
      [-2, 1, 0.3],
      [0, -1, -0.5],
    ];
    const y = [1, 1, 1, 0, 0, 0];
    const p = trainLogisticProbe(rows, y, { c: 2 });
    const grad = [0, 0, 0, 0];
    rows.forEach((x, i) => {
      const g = probeProbability(p, x) - y[i];
      x.forEach((v, j) => (grad[j] += g * v));
      grad[3] += g;
    });
    p.weights.forEach((w, j) => (grad[j] += w / 2));
    for (const g of grad) expect(Math.abs(g)).toBeLessThan(1e-5);
  });

  it('is deterministic', () => {
    const rows = [
      [1, 0],
      [0, 1],
      [-1, 0.2],
      [0.3, -1],
    ];
    const a = trainLogisticProbe(rows, [1, 1, 0, 0]);
    const b = trainLogisticProbe(rows, [1, 1, 0, 0]);
    expect(Array.from(a.weights)).toEqual(Array.from(b.weights));
  });
});

describe('probeAccuracy', () => {
  it('counts predictions at threshold 0.5', () => {
    const probe: LogisticProbe = { weights: Float64Array.from([1, -1]), bias: 0, iterations: 0, converged: true };
    // scores: 1 (->1), -1 (->0), 2 (->1), -0.5 (->0); labels 1, 1, 1, 0 -> 3 of 4 correct.
    const rows = [
      [1, 0],
      [0, 1],
      [2, 0],
      [0, 0.5],
    ];
    expect(probeAccuracy(probe, rows, [1, 1, 1, 0])).toBe(0.75);
  });
});
