/**
 * Units of revision and where they sit in the dense tap / feed layout of '@libs/vlm':
 * layer level: [layers * hidden] (residual stream after each layer);
 * head level: [layers * heads * headDim] (o_proj input, one headDim slice per head).
 */
import type { ModelInfo, TapFrame } from '@libs/vlm';

export type RevisionLevel = 'layer' | 'head';

export interface Unit {
  layer: number;
  /** Present at head level only. */
  head?: number;
}

export type ModelShape = Pick<ModelInfo, 'layers' | 'hidden' | 'heads' | 'headDim'>;

/** Number of entries of one unit's vector. */
export function unitSize(shape: ModelShape, level: RevisionLevel): number {
  return level === 'layer' ? shape.hidden : shape.headDim;
}

/** Length of the dense vector for a level. */
export function denseLength(shape: ModelShape, level: RevisionLevel): number {
  return level === 'layer' ? shape.layers * shape.hidden : shape.layers * shape.heads * shape.headDim;
}

export function unitOffset(shape: ModelShape, level: RevisionLevel, unit: Unit): number {
  if (level === 'layer') return unit.layer * shape.hidden;
  return (unit.layer * shape.heads + (unit.head ?? 0)) * shape.headDim;
}

/** Every unit of a level, in layout order. */
export function allUnits(shape: ModelShape, level: RevisionLevel): Unit[] {
  const units: Unit[] = [];
  for (let layer = 0; layer < shape.layers; layer++) {
    if (level === 'layer') units.push({ layer });
    else for (let head = 0; head < shape.heads; head++) units.push({ layer, head });
  }
  return units;
}

export function unitInRange(shape: ModelShape, level: RevisionLevel, unit: Unit): boolean {
  const okLayer = Number.isInteger(unit.layer) && unit.layer >= 0 && unit.layer < shape.layers;
  if (level === 'layer') return okLayer && unit.head === undefined;
  return okLayer && Number.isInteger(unit.head) && unit.head! >= 0 && unit.head! < shape.heads;
}

export function unitKey(unit: Unit): string {
  return unit.head === undefined ? `L${unit.layer}` : `L${unit.layer}.H${unit.head}`;
}

/** The unit's view into a dense vector (no copy). */
export function unitSlice<T extends Float32Array | Float64Array>(dense: T, shape: ModelShape, level: RevisionLevel, unit: Unit): T {
  const start = unitOffset(shape, level, unit);
  return dense.subarray(start, start + unitSize(shape, level)) as T;
}

/** The dense array of a tap frame that belongs to a level. */
export function frameVector(frame: TapFrame, level: RevisionLevel): Float32Array {
  return level === 'layer' ? frame.layer : frame.head;
}

/** One row per frame: the unit's activations. */
export function unitRows(frames: readonly TapFrame[], shape: ModelShape, level: RevisionLevel, unit: Unit): Float32Array[] {
  return frames.map((f) => unitSlice(frameVector(f, level), shape, level, unit));
}
