/**
 * Direction math for activation revision (ITI / IAR / HSI), on plain typed arrays.
 * A "row" is one sample's activation vector for one unit (a layer's residual stream or one head's slice).
 * Everything is computed in float64: the vectors are small and the sums over samples lose precision in float32.
 */
import { trainLogisticProbe, type ProbeOptions } from './probe';

export type Row = ArrayLike<number>;

export function dot(a: Row, b: Row): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export function norm(a: Row): number {
  return Math.sqrt(dot(a, a));
}

/** Unit vector along `v`; a zero vector has no direction, so it is an error rather than a silent NaN. */
export function normalize(v: Row): Float64Array {
  const n = norm(v);
  if (!(n > 0) || !Number.isFinite(n)) throw new RangeError('cannot normalize a zero or non-finite vector');
  const out = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = v[i] / n;
  return out;
}

export function cosine(a: Row, b: Row): number {
  return dot(a, b) / (norm(a) * norm(b));
}

export function meanRow(rows: readonly Row[]): Float64Array {
  if (rows.length === 0) throw new RangeError('mean of zero rows');
  const out = new Float64Array(rows[0].length);
  for (const r of rows) for (let i = 0; i < out.length; i++) out[i] += r[i];
  for (let i = 0; i < out.length; i++) out[i] /= rows.length;
  return out;
}

/**
 * MMS (mass mean shift, ITI "center of mass"): theta = (mu+ - mu-) / ||mu+ - mu-||.
 * `positive` is the class the direction points toward (the safe behaviour, see docs/safety-methods.md).
 */
export function massMeanShift(positive: readonly Row[], negative: readonly Row[]): Float64Array {
  const mp = meanRow(positive);
  const mn = meanRow(negative);
  for (let i = 0; i < mp.length; i++) mp[i] -= mn[i];
  return normalize(mp);
}

/**
 * PWD (probe weight direction, ITI): theta = w / ||w|| of an L2-regularized logistic probe trained to tell
 * `positive` (label 1) from `negative` (label 0), so theta points toward the positive class like MMS does.
 */
export function probeWeightDirection(positive: readonly Row[], negative: readonly Row[], options: ProbeOptions = {}): Float64Array {
  const rows = [...positive, ...negative];
  const labels = rows.map((_, i) => (i < positive.length ? 1 : 0));
  return normalize(trainLogisticProbe(rows, labels, options).weights);
}

/**
 * sigma = std of all activations (both classes) projected on the unit direction, population std (ddof 0) as
 * numpy's np.std in the ITI/HSI code. It sets the revision's scale in the activation's own units.
 */
export function projectionStd(rows: readonly Row[], direction: Row): number {
  if (rows.length === 0) throw new RangeError('std of zero rows');
  const p = rows.map((r) => dot(r, direction));
  const m = p.reduce((a, b) => a + b, 0) / p.length;
  return Math.sqrt(p.reduce((a, b) => a + (b - m) * (b - m), 0) / p.length);
}

/** The vector that is added to the activation: alpha * sigma * theta (float32, the decoder's input dtype). */
export function scaledVector(direction: Row, sigma: number, alpha: number): Float32Array {
  const out = new Float32Array(direction.length);
  for (let i = 0; i < out.length; i++) out[i] = alpha * sigma * direction[i];
  return out;
}
