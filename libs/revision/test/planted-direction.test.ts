import { describe, expect, it } from 'vitest';
import { cosine } from '../src/directions';
import { unitKey } from '../src/layout';
import { calibrate } from '../src/calibration';
import type { ContrastSet } from '../src/sample-strategies';
import { fakeTapEngine, modelInfo, plantedFrames, unitVector } from './helpers';

// 2 layers x 4 heads = 8 heads of 16 dims; head L1.H2 and layer 0 carry the class signal.
const info = modelInfo({ layers: 2, heads: 4, headDim: 16, hidden: 8 });
const direction = unitVector(16, 11);
const layerDirection = unitVector(8, 12);
const { frames, classes } = plantedFrames({
  info,
  perClass: 1000,
  signalHead: { layer: 1, head: 2 },
  signalLayer: 0,
  direction,
  layerDirection,
  delta: 3,
  seed: 7,
});
const contrast: ContrastSet = {
  strategy: 'multi-response',
  requests: frames.map((_, i) => ({ prompt: `s${i}` })),
  classes,
  positiveClass: 'safe',
  sampleIndexes: frames.map((_, i) => i),
};

describe.each(['mms', 'pwd'] as const)('planted direction, %s', (method) => {
  it('recovers the head direction (cosine > 0.99) and ranks its head first', async () => {
    const engine = fakeTapEngine(info, frames);
    const result = await calibrate(engine, contrast, { level: 'head', method, topK: 2, batchSize: 64 });
    expect(unitKey(result.ranking[0].unit)).toBe('L1.H2');
    expect(cosine(result.ranking[0].direction, direction)).toBeGreaterThan(0.99);
    expect(result.ranking[0].probeAccuracy).toBeGreaterThan(0.9);
    // Noise heads probe at chance.
    expect(result.ranking[1].probeAccuracy).toBeLessThan(0.75);
    // sigma: both classes projected on the direction: var = 1 (noise) + (delta/2)^2 = 3.25.
    expect(result.ranking[0].sigma).toBeGreaterThan(Math.sqrt(3.25) * 0.9);
    expect(result.ranking[0].sigma).toBeLessThan(Math.sqrt(3.25) * 1.1);
    // The dense artifact vector holds the unit direction at the head's slice and zeros at unselected heads.
    const start = (1 * 4 + 2) * 16;
    expect(cosine(result.directions.subarray(start, start + 16), direction)).toBeGreaterThan(0.99);
    const selected = new Set(result.selected.map((s) => unitKey(s.unit)));
    for (let h = 0; h < 8; h++) {
      const key = `L${Math.floor(h / 4)}.H${h % 4}`;
      const slice = result.directions.subarray(h * 16, h * 16 + 16);
      expect(slice.some((v) => v !== 0)).toBe(selected.has(key));
    }
  });

  it('recovers the layer direction at layer level', async () => {
    const engine = fakeTapEngine(info, frames);
    const result = await calibrate(engine, contrast, { level: 'layer', method, batchSize: 64 });
    expect(result.selected.map((s) => unitKey(s.unit))).toEqual(['L0']);
    expect(cosine(result.selected[0].direction, layerDirection)).toBeGreaterThan(0.99);
    expect(result.draft.selection[0].rank).toBe(1);
  });
});

describe('causal ranking (HSI)', () => {
  it('ranks the head whose revision moves the output first, even when another head probes better', async () => {
    // L1.H2 carries the class signal (best probe) but is wired to nothing downstream; L0.H1 is pure noise
    // for the probe, but revising it moves the final layer along the class direction.
    const finalDir = unitVector(8, 99);
    const withFinal = frames.map((f, i) => {
      const layer = f.layer.slice();
      for (let j = 0; j < 8; j++) layer[8 + j] += (classes[i] ? 1 : -1) * finalDir[j];
      return { layer, head: f.head };
    });
    const causalHead = 1; // L0.H1 in layout order
    const engine = fakeTapEngine(info, withFinal, (head) => {
      let m = 0;
      for (let j = 0; j < 16; j++) m += Math.abs(head[causalHead * 16 + j]);
      return Float32Array.from(finalDir, (v) => v * m);
    });
    const probeRanked = await calibrate(engine, contrast, { level: 'head', method: 'mms', topK: 1, batchSize: 500 });
    expect(unitKey(probeRanked.selected[0].unit)).toBe('L1.H2');
    const causal = await calibrate(engine, contrast, { level: 'head', method: 'mms', topK: 1, causal: true, causalAlpha: 1, batchSize: 500 });
    expect(unitKey(causal.selected[0].unit)).toBe('L0.H1');
    expect(causal.selected[0].causalEffect).toBeGreaterThan(0);
    expect(causal.draft.rankedBy).toBe('causal-effect');
    expect(causal.draft.selection[0].causalEffect).toBe(causal.selected[0].causalEffect);
    for (const s of causal.ranking) if (unitKey(s.unit) !== 'L0.H1') expect(Math.abs(s.causalEffect!)).toBeLessThan(1e-6);
  });
});
