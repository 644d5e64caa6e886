/**
 * Linear read-outs of the residual stream at the last prompt token: the hidden-state detector's logit and the
 * input-adaptive revision's gate (types.ts LinearProbe / RevisionGate). Pure functions over a tap frame, shared by
 * the engine (which reads them from each row's prefill) and calibration code (which fits them on readTaps frames).
 */
import type { LinearProbe, RevisionGate } from './types';

/** A probe fits a decoder of `layers` x `hidden`: its layer in range, `hidden` weights (and center values), a finite bias. */
export function checkProbe(p: LinearProbe, text: { layers: number; hidden: number }, what = 'probe'): void {
  if (!(Number.isInteger(p.layer) && p.layer >= 0 && p.layer < text.layers)) throw new RangeError(`${what} layer must be in [0, ${text.layers})`);
  if (p.weights.length !== text.hidden || (p.center && p.center.length !== text.hidden))
    throw new RangeError(`${what} needs ${text.hidden} weights (and center values)`);
  if (!Number.isFinite(p.bias)) throw new RangeError(`${what} needs a finite bias`);
}

/** z = weights · (tap[layer] - center) + bias, on a frame's `layer` tap of [layers * hidden]. */
export function readProbe(probe: LinearProbe, layerTap: Float32Array, hidden: number): number {
  const start = probe.layer * hidden;
  if (probe.weights.length !== hidden) throw new RangeError(`probe has ${probe.weights.length} weights, the model's hidden size is ${hidden}`);
  if (!(start >= 0 && start + hidden <= layerTap.length)) throw new RangeError(`probe layer ${probe.layer} is outside the tap frame`);
  let z = probe.bias;
  for (let i = 0; i < hidden; i++) z += probe.weights[i] * (layerTap[start + i] - (probe.center ? probe.center[i] : 0));
  return z;
}

/** clamp((z - low) / (high - low), 0, 1): 0 below `low` (not revised), 1 above `high` (the full feed). */
export function gateScale(gate: Pick<RevisionGate, 'low' | 'high'>, z: number): number {
  if (!(gate.high > gate.low)) throw new RangeError(`a revision gate needs high > low (got low ${gate.low}, high ${gate.high})`);
  return Math.min(1, Math.max(0, (z - gate.low) / (gate.high - gate.low)));
}
