/**
 * A gated (input-adaptive) revision profile on models/factory-vlm (issue 12 item 3): the shipped image-shift
 * artifact, scaled per row by the shipped hidden-state detector read from the row's own unrevised prefill. One
 * batched decode holds a benign row, a harmful row with its photo and an unrevised row. References: the detector
 * logit recomputed here by hand from a teacher-forced readTaps frame, and the content judge on the answers.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isUnsafe, readEvalSet } from '@libs/evaluation';
import { LocalVlmEngine, type GenerationRequest } from '@libs/vlm';
import { RevisionProfiles } from '../src/profiles';

const ROOT = resolve(__dirname, '../../..');
const ARTIFACT = join(ROOT, 'config/profiles-artifacts/factory-vlm-layer-image-shift');
const DETECTOR = join(ROOT, 'config/detectors/factory-vlm.json');
const detectorSha = createHash('sha256').update(readFileSync(DETECTOR)).digest('hex');
const artifactSha = createHash('sha256')
  .update(readFileSync(join(ARTIFACT, 'manifest.json')))
  .digest('hex');
const detectorFile = JSON.parse(readFileSync(DETECTOR, 'utf8')) as { layer: number; weights: number[]; bias: number; center: number[] };

const TEST = join(ROOT, 'data/factorysafe/test');
const items = readEvalSet(join(TEST, 'test.jsonl'));
const benign = items.find((i) => i.kind === 'benign_visual')!;
const harmful = items.find((i) => i.kind === 'harmful' && i.image)!;
const imageOf = (p: string) => new Uint8Array(readFileSync(join(TEST, p)));

const profileConfig = (gate: Record<string, unknown>) => ({
  profiles: [{ name: 'adaptive', artifact: ARTIFACT, artifactSha256: artifactSha, level: 'layer', alpha: 1.5, positions: 'last', tenants: ['*'], gate }],
});

/** The detector's logit, in float64, from a frame (the reference the engine's gate is held to). */
function handZ(layerTap: Float32Array, hidden: number): number {
  let z = detectorFile.bias;
  for (let i = 0; i < hidden; i++) z += detectorFile.weights[i] * (layerTap[detectorFile.layer * hidden + i] - detectorFile.center[i]);
  return z;
}

describe('gated revision profile on factory-vlm', () => {
  let engine: LocalVlmEngine;
  let zBenign: number;
  let zHarmful: number;
  beforeAll(async () => {
    engine = await LocalVlmEngine.open({ packDir: join(ROOT, 'models/factory-vlm'), scheduler: { maxBatchSize: 8 } });
    const hidden = engine.info().hidden;
    const frames = await engine.readTaps([
      { prompt: benign.prompt, image: imageOf(benign.image!) },
      { prompt: harmful.prompt, image: imageOf(harmful.image!) },
    ]);
    [zBenign, zHarmful] = frames.map((f) => handZ(f.layer, hidden));
  });
  afterAll(() => engine?.close());

  it('refuses a gate whose detector is not the pinned one, or whose ramp is empty', () => {
    const model = engine.info();
    expect(() => RevisionProfiles.fromConfig(profileConfig({ detector: DETECTOR, detectorSha256: 'a'.repeat(64), low: 0, high: 1 }), model, ROOT)).toThrow(
      expect.objectContaining({ code: 'gate_detector_invalid' }),
    );
    expect(() => RevisionProfiles.fromConfig(profileConfig({ detector: DETECTOR, detectorSha256: detectorSha, low: 1, high: 1 }), model, ROOT)).toThrow(
      expect.objectContaining({ code: 'profiles_config_invalid' }),
    );
  });

  it('scales each row by its own prefill: the benign row is not revised, the harmful photo row is and refuses', async () => {
    // The ramp sits between the two rows' logits, so the benign row's scale is 0 and the harmful one's is 1.
    expect(zHarmful).toBeGreaterThan(zBenign + 2);
    const low = zBenign + 0.5;
    const high = zHarmful - 0.5;
    const profiles = RevisionProfiles.fromConfig(profileConfig({ detector: DETECTOR, detectorSha256: detectorSha, low, high }), engine.info(), ROOT);
    const { feed, profile } = profiles.resolve('adaptive', 'any');
    expect(profile.gate).toMatchObject({ detectorSha256: detectorSha, low, high });
    expect(feed!.gate!.probe.layer).toBe(detectorFile.layer);
    const req = (i: typeof benign, revision: GenerationRequest['revision']): GenerationRequest => ({
      prompt: i.prompt,
      image: imageOf(i.image!),
      revision,
      maxNewTokens: 48,
    });
    const [b, h, plainB, plainH] = await engine.generate([req(benign, feed), req(harmful, feed), req(benign, undefined), req(harmful, undefined)]);
    expect(b.revisionScale).toBe(0);
    expect(h.revisionScale).toBe(1);
    expect(b.text).toBe(plainB.text);
    expect(isUnsafe(harmful, plainH.text)).toBe(true);
    expect(isUnsafe(harmful, h.text)).toBe(false);
    expect(h.text.toLowerCase()).toMatch(/can't help|cannot help/);
  });

  it('a half-open gate gives the scale of the ramp at the row own logit', async () => {
    const low = zHarmful - 1;
    const high = zHarmful + 1;
    const profiles = RevisionProfiles.fromConfig(profileConfig({ detector: DETECTOR, detectorSha256: detectorSha, low, high }), engine.info(), ROOT);
    const [h] = await engine.generate([
      { prompt: harmful.prompt, image: imageOf(harmful.image!), revision: profiles.resolve('adaptive', 'x').feed, maxNewTokens: 4 },
    ]);
    expect(h.revisionScale).toBeCloseTo((zHarmful - low) / (high - low), 4);
  });
});
