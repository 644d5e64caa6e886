/**
 * L2-regularized logistic-regression probe (ITI's linear probe), written out so calibration has no Python
 * dependency and is deterministic: zero init, L-BFGS with a fixed iteration budget.
 *
 * Objective (sklearn's LogisticRegression with penalty='l2', the probe ITI/HSI train):
 *   J(w, b) = sum_i log(1 + exp(-y'_i (w.x_i + b))) + ||w||^2 / (2C),   y' in {-1, +1}
 * The bias is not penalized. C = 1 is sklearn's default and what ITI used; features are raw activations,
 * also as in ITI, so the direction lives in the activation space that is revised.
 */
import type { Row } from './directions';

export interface ProbeOptions {
  /** Inverse regularization strength (sklearn's C). Default 1. */
  c?: number;
  /** L-BFGS iteration budget. Default 200. */
  maxIterations?: number;
  /**
   * Stop when the largest absolute gradient entry, divided by the number of samples, falls below this
   * (per-sample, so the criterion does not tighten as the calibration set grows). Default 1e-6.
   */
  tolerance?: number;
}

export interface LogisticProbe {
  weights: Float64Array;
  bias: number;
  iterations: number;
  converged: boolean;
}

export const PROBE_DEFAULTS = { c: 1, maxIterations: 200, tolerance: 1e-6 } as const;

/** log(1 + exp(-m)) without overflow for large |m|. */
function softplusNeg(m: number): number {
  return m > 0 ? Math.log1p(Math.exp(-m)) : -m + Math.log1p(Math.exp(m));
}

function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

/** Objective and gradient at theta = [w..., b]. */
function objective(rows: readonly Row[], y: Float64Array, theta: Float64Array, invC: number, grad: Float64Array): number {
  const d = theta.length - 1;
  grad.fill(0);
  let loss = 0;
  for (let i = 0; i < rows.length; i++) {
    const x = rows[i];
    let z = theta[d];
    for (let j = 0; j < d; j++) z += theta[j] * x[j];
    const m = y[i] * z;
    loss += softplusNeg(m);
    // d/dz log(1+exp(-y z)) = -y * sigmoid(-y z)
    const g = -y[i] * sigmoid(-m);
    for (let j = 0; j < d; j++) grad[j] += g * x[j];
    grad[d] += g;
  }
  let reg = 0;
  for (let j = 0; j < d; j++) {
    reg += theta[j] * theta[j];
    grad[j] += invC * theta[j];
  }
  return loss + 0.5 * invC * reg;
}

function maxAbs(v: Float64Array): number {
  let m = 0;
  for (const x of v) m = Math.max(m, Math.abs(x));
  return m;
}

function vdot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Train on `rows` with `labels` (1 = positive class, 0 = negative class). */
export function trainLogisticProbe(rows: readonly Row[], labels: ArrayLike<number>, options: ProbeOptions = {}): LogisticProbe {
  const { c, maxIterations, tolerance } = { ...PROBE_DEFAULTS, ...options };
  if (rows.length === 0) throw new RangeError('probe needs samples');
  if (!(c > 0)) throw new RangeError('probe C must be > 0');
  const n = rows.length;
  const d = rows[0].length;
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) y[i] = labels[i] ? 1 : -1;
  const invC = 1 / c;

  const memory = 10;
  const sHist: Float64Array[] = [];
  const yHist: Float64Array[] = [];
  let theta = new Float64Array(d + 1);
  let grad = new Float64Array(d + 1);
  let f = objective(rows, y, theta, invC, grad);
  let iterations = 0;
  const gtol = tolerance * n;
  let converged = maxAbs(grad) < gtol;

  while (!converged && iterations < maxIterations) {
    // Two-loop recursion: direction = -H * grad.
    const q = Float64Array.from(grad);
    const alphas: number[] = [];
    for (let k = sHist.length - 1; k >= 0; k--) {
      const rho = 1 / vdot(yHist[k], sHist[k]);
      const a = rho * vdot(sHist[k], q);
      alphas[k] = a;
      for (let j = 0; j < q.length; j++) q[j] -= a * yHist[k][j];
    }
    if (sHist.length > 0) {
      const k = sHist.length - 1;
      const gamma = vdot(sHist[k], yHist[k]) / vdot(yHist[k], yHist[k]);
      for (let j = 0; j < q.length; j++) q[j] *= gamma;
    } else {
      // First step: scale so the trial step has unit length, whatever the activation magnitude.
      const g = Math.sqrt(vdot(grad, grad));
      for (let j = 0; j < q.length; j++) q[j] /= g;
    }
    for (let k = 0; k < sHist.length; k++) {
      const rho = 1 / vdot(yHist[k], sHist[k]);
      const b = rho * vdot(yHist[k], q);
      for (let j = 0; j < q.length; j++) q[j] += sHist[k][j] * (alphas[k] - b);
    }
    const dir = q.map((v) => -v);
    let slope = vdot(grad, dir);
    if (slope >= 0) {
      // Not a descent direction (curvature information went stale): restart from steepest descent.
      sHist.length = 0;
      yHist.length = 0;
      for (let j = 0; j < dir.length; j++) dir[j] = -grad[j];
      slope = vdot(grad, dir);
    }
    // Backtracking (Armijo) line search.
    let step = 1;
    const next = new Float64Array(d + 1);
    const nextGrad = new Float64Array(d + 1);
    let fNext = Infinity;
    let accepted = false;
    for (let ls = 0; ls < 40 && !accepted; ls++) {
      for (let j = 0; j < next.length; j++) next[j] = theta[j] + step * dir[j];
      fNext = objective(rows, y, next, invC, nextGrad);
      accepted = fNext <= f + 1e-4 * step * slope;
      if (!accepted) step *= 0.5;
    }
    iterations++;
    // The line search only fails at the limit of float64 precision: the optimum is reached.
    if (!accepted) break;
    const s = next.map((v, j) => v - theta[j]);
    const yk = nextGrad.map((v, j) => v - grad[j]);
    if (vdot(s, yk) > 1e-12) {
      sHist.push(s);
      yHist.push(yk);
      if (sHist.length > memory) {
        sHist.shift();
        yHist.shift();
      }
    }
    theta = next;
    grad = nextGrad;
    f = fNext;
    converged = maxAbs(grad) < gtol;
  }
  return { weights: theta.slice(0, d), bias: theta[d], iterations, converged };
}

/** P(positive | x). */
export function probeProbability(probe: LogisticProbe, row: Row): number {
  let z = probe.bias;
  for (let j = 0; j < probe.weights.length; j++) z += probe.weights[j] * row[j];
  return sigmoid(z);
}

/** Fraction of rows the probe classifies correctly at threshold 0.5 (ITI's validation accuracy). */
export function probeAccuracy(probe: LogisticProbe, rows: readonly Row[], labels: ArrayLike<number>): number {
  if (rows.length === 0) return NaN;
  let correct = 0;
  for (let i = 0; i < rows.length; i++) {
    const predicted = probeProbability(probe, rows[i]) >= 0.5 ? 1 : 0;
    if (predicted === (labels[i] ? 1 : 0)) correct++;
  }
  return correct / rows.length;
}
