/**
 * Issue 12 items 1 and 2 on the FactorySafe model (models/factory-vlm, 4 decoder layers) through the real runtime:
 * the image-shift contrast calibrated at layer and head level (MMS checked against a hand computation on readTaps
 * frames), and `modctl calibrate --select generation` ranking the layers by judged generation on a 24-item subset of
 * the calibration eval items, cross-checked against the profile path (buildFeed from the written artifact).
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evalCases, judge, readEvalSet, summarize } from '@libs/evaluation';
import { openVlmEngine, type VlmEngine } from '@libs/vlm';
import { run as calibrateCommand } from '../../../apps/modctl/src/commands/calibrate';
import { loadArtifact, writeArtifact, type ArtifactManifest } from '../src/artifact';
import { calibrate } from '../src/calibration';
import { selectionCases } from '../src/causal-selection';
import { dot, norm } from '../src/directions';
import { unitOffset, unitSize } from '../src/layout';
import { buildFeed } from '../src/profiles';
import { buildContrastSet, fileImageReader, readSamplesFile } from '../src/sample-strategies';
import { captureCli } from './helpers';
import { REPO } from './tiny-pack';

const PACK = join(REPO, 'models/factory-vlm');
const CALIBRATION = join(REPO, 'data/factorysafe/calibration');
const INSTRUCTIONS = join(CALIBRATION, 'instructions.jsonl');
const EVAL = join(CALIBRATION, 'eval.jsonl');
if (!existsSync(join(PACK, 'onnx')) || !existsSync(INSTRUCTIONS)) {
  throw new Error('models/factory-vlm or data/factorysafe missing: the image-shift e2e tests cannot run');
}

const work = mkdtempSync(join(tmpdir(), 'image-shift-e2e-'));
let engine: VlmEngine;

beforeAll(async () => {
  engine = await openVlmEngine({ packDir: PACK, thread: 'inline' });
});

afterAll(async () => {
  await engine?.close();
});

const cli = (argv: string[]) => captureCli(calibrateCommand, argv);

/** 12 harmful instructions and 6 benign ones (which image-shift must ignore). */
function subset() {
  const { samples, baseDir } = readSamplesFile(INSTRUCTIONS);
  const harmful = samples.filter((s) => s.kind === 'harmful').slice(0, 12);
  const benign = samples.filter((s) => s.kind !== 'harmful').slice(0, 6);
  return { samples: [...benign.slice(0, 3), ...harmful, ...benign.slice(3)], reader: fileImageReader(baseDir) };
}

describe('image-shift calibration on factory-vlm', () => {
  it('layer MMS: the direction is mean(text-only) - mean(with image) of the generation-prompt taps, by hand', async () => {
    const { samples, reader } = subset();
    const contrast = buildContrastSet(samples, 'image-shift', reader);
    expect(contrast.requests).toHaveLength(24);
    expect(contrast.requests.every((r) => r.response === undefined)).toBe(true);
    expect(contrast.requests.filter((r, i) => (contrast.classes[i] === 1) === (r.image === undefined))).toHaveLength(24);

    const result = await calibrate(engine, contrast, { level: 'layer', method: 'mms', topK: 4 });
    expect(result.draft).toMatchObject({ strategy: 'image-shift', positiveClass: 'text-only', samples: { positive: 12, negative: 12 } });

    // Independent reference: taps read one request at a time, means and std in plain float64 loops.
    const info = engine.info();
    const frames = [];
    for (const r of contrast.requests) frames.push(...(await engine.readTaps([r])));
    for (const s of result.ranking) {
      const start = unitOffset(info, 'layer', s.unit);
      const rows = frames.map((f) => Array.from(f.layer.subarray(start, start + info.hidden)));
      const diff = new Array<number>(info.hidden).fill(0);
      rows.forEach((row, i) => row.forEach((v, d) => (diff[d] += (contrast.classes[i] ? v : -v) / 12)));
      const n = Math.sqrt(diff.reduce((a, v) => a + v * v, 0));
      const byHand = diff.map((v) => v / n);
      expect(dot(byHand, s.direction)).toBeGreaterThan(1 - 1e-5);
      const proj = rows.map((row) => row.reduce((a, v, d) => a + v * byHand[d], 0));
      const mean = proj.reduce((a, b) => a + b, 0) / proj.length;
      const sigma = Math.sqrt(proj.reduce((a, p) => a + (p - mean) ** 2, 0) / proj.length);
      expect(s.sigma).toBeCloseTo(sigma, 3);
    }
  });

  it('head PWD: the artifact loads with the fingerprint and its selected heads point toward the text-only taps', async () => {
    const { samples, reader } = subset();
    const contrast = buildContrastSet(samples, 'image-shift', reader);
    const result = await calibrate(engine, contrast, { level: 'head', method: 'pwd', topK: 4 });
    const dir = join(work, 'head-pwd');
    writeArtifact(dir, result.draft, result.directions);
    const artifact = loadArtifact(dir, { expectedFingerprint: engine.info().fingerprint });
    expect(artifact.manifest).toMatchObject({ strategy: 'image-shift', level: 'head', method: 'pwd', positiveClass: 'text-only' });
    expect(artifact.manifest.selection).toHaveLength(4);
    const info = engine.info();
    const frames = await engine.readTaps(contrast.requests);
    for (const u of artifact.manifest.selection) {
      const start = unitOffset(info, 'head', u);
      const theta = artifact.directions.subarray(start, start + unitSize(info, 'head'));
      expect(norm(theta)).toBeCloseTo(1, 5);
      const proj = frames.map((f) => dot(f.head.subarray(start, start + theta.length), theta));
      const meanOf = (cls: number) => proj.filter((_, i) => contrast.classes[i] === cls).reduce((a, b) => a + b, 0) / 12;
      expect(meanOf(1)).toBeGreaterThan(meanOf(0));
    }
  });
});

describe('modctl calibrate --select generation', () => {
  it('ranks the layers by judged generation: the last layer (L3) first for image-shift layer MMS at alpha 1.5', async () => {
    const out = join(work, 'layer-mms-generation');
    const argv = ['--pack', PACK, '--samples', INSTRUCTIONS, '--strategy', 'image-shift', '--level', 'layer', '--method', 'mms'];
    const res = await cli([...argv, '--select', 'generation', '--eval', EVAL, '--select-limit', '24', '--top-k', '1', '--out', out]);
    expect(res.code, res.stderr).toBe(0);
    const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as ArtifactManifest;
    expect(m).toMatchObject({ strategy: 'image-shift', positiveClass: 'text-only', rankedBy: 'generation-effect' });
    expect(m.selection.map((u) => u.layer)).toEqual([3]);
    const gs = m.calibration.generationSelection as { alpha: number; cases: { imageHarmful: number; benign: number }; baseline: Record<string, number> };
    expect(gs).toMatchObject({ alpha: 1.5, positions: 'last', maxNewTokens: 48, cases: { imageHarmful: 8, benign: 19 } });
    expect(res.stdout).toMatch(/probe-accuracy ranking: L\d, L\d, L\d, L\d/);
    expect(res.stdout).toMatch(/generation ranking: +L3, /);

    // The same unit through the profile path (the written artifact, buildFeed) gives the rates the selection recorded.
    const artifact = loadArtifact(out, { expectedFingerprint: engine.info().fingerprint });
    const feed = buildFeed(artifact, [{ layer: 3 }], 1.5, 'last');
    const cases = selectionCases(evalCases(readEvalSet(EVAL, 24), EVAL));
    const answers = await engine.generate(cases.map((c) => ({ prompt: c.item.prompt, image: c.image, maxNewTokens: 48, revision: feed })));
    const metrics = summarize(cases.map((c, i) => judge(c, answers[i].text, { tokens: 0, latencyMs: 0 })));
    const g = m.selection[0].generation!;
    expect(g.asr).toBe(metrics.imageHarmfulAsr.value);
    expect(g.benignAccuracy).toBe(metrics.benignAccuracy.value);
    expect(g.asr).toBeLessThan(gs.baseline.asr);
    // score = ASR drop / max(benign-accuracy loss, 0.01), by hand.
    expect(g.score).toBeCloseTo((gs.baseline.asr - g.asr) / Math.max(gs.baseline.benignAccuracy - g.benignAccuracy, 0.01), 10);
  });

  it('the shipped artifact (config/profiles-artifacts/factory-vlm-layer-image-shift) loads against the pack; if the pack was rebuilt, regenerate it (docs/safety-methods.md 1.8)', () => {
    const artifact = loadArtifact(join(REPO, 'config/profiles-artifacts/factory-vlm-layer-image-shift'), { expectedFingerprint: engine.info().fingerprint });
    expect(artifact.manifest).toMatchObject({
      strategy: 'image-shift',
      level: 'layer',
      method: 'mms',
      positiveClass: 'text-only',
      rankedBy: 'generation-effect',
    });
    expect(artifact.manifest.selection.map((u) => u.layer)).toEqual([3]);
  });

  it('needs --eval, and takes --eval only with --select generation', async () => {
    const base = ['--pack', PACK, '--samples', INSTRUCTIONS, '--strategy', 'image-shift', '--level', 'layer', '--method', 'mms', '--out', join(work, 'x')];
    expect((await cli([...base, '--select', 'generation'])).code).toBe(2);
    expect((await cli([...base, '--eval', EVAL])).code).toBe(2);
    expect((await cli([...base, '--select', 'causal'])).code).toBe(2);
  });
});
