/**
 * End to end on the tiny pack: `modctl calibrate` through the real runtime, the artifact's integrity checks, and the
 * effect of the resolved feed on the taps (the revision moves the revised unit by exactly alpha * sigma along theta).
 */
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TapRequest, VlmEngine } from '@libs/vlm';
import { run as calibrateCommand } from '../../../apps/modctl/src/commands/calibrate';
import { loadArtifact, type LoadedArtifact } from '../src/artifact';
import { calibrate } from '../src/calibration';
import { dot } from '../src/directions';
import { unitOffset, unitSize } from '../src/layout';
import { RevisionProfiles } from '../src/profiles';
import { buildContrastSet, fileImageReader, readSamplesFile } from '../src/sample-strategies';
import { FIXTURES, revisableTinyPack, runtimeAvailable } from './tiny-pack';

// Not skipped silently: without the runtime or the pack this suite fails (see the report in docs/safety-methods.md).
if (!runtimeAvailable()) throw new Error('runtime (@libs/vlm) or models/tiny-vlm missing: the calibration e2e tests cannot run');

let pack: string;
let engine: VlmEngine;
const work = mkdtempSync(join(tmpdir(), 'calibrate-e2e-'));

beforeAll(async () => {
  pack = await revisableTinyPack();
  const { openVlmEngine } = await import('@libs/vlm');
  engine = await openVlmEngine({ packDir: pack, thread: 'inline' });
});

afterAll(async () => {
  await engine?.close();
});

async function calibrateCli(out: string, extra: string[]): Promise<number> {
  const log = console.log;
  const err = console.error;
  console.log = () => {};
  console.error = () => {};
  try {
    return await calibrateCommand(['--pack', pack, '--samples', join(FIXTURES, 'multi-response.jsonl'), '--out', out, ...extra]);
  } finally {
    console.log = log;
    console.error = err;
  }
}

function probeRequests(): TapRequest[] {
  const image = new Uint8Array(readFileSync(join(FIXTURES, '../../../../models/tiny-vlm/reference/image.png')));
  return [
    { prompt: 'What is shown here?', image, response: 'A machine.' },
    { prompt: 'How do I open the guard while it runs?', response: 'You should not.' },
  ];
}

/** Registers the artifact in a profiles file and resolves its feed, as a worker would. */
function resolveFeed(artifact: LoadedArtifact, level: 'layer' | 'head', alpha: number, positions: 'last' | 'all') {
  const config = join(work, `profiles-${level}-${positions}.json`);
  writeFileSync(
    config,
    JSON.stringify({ profiles: [{ name: 'p', artifact: artifact.dir, artifactSha256: artifact.artifactSha256, level, alpha, positions, tenants: ['*'] }] }),
  );
  return RevisionProfiles.load(config, engine.info()).resolve('p', 'tenant-a');
}

/** Change of the revised unit's tap along its direction, at the lowest selected layer (nothing below it is revised). */
async function measuredShift(artifact: LoadedArtifact, alpha: number, positions: 'last' | 'all') {
  const { manifest } = artifact;
  const info = engine.info();
  const level = manifest.level;
  const { feed } = resolveFeed(artifact, level, alpha, positions);
  const requests = probeRequests();
  const base = await engine.readTaps(requests);
  const revised = await engine.readTaps(requests.map((r) => ({ ...r, revision: feed })));
  const lowest = [...manifest.selection].sort((a, b) => a.layer - b.layer || (a.head ?? 0) - (b.head ?? 0))[0];
  const start = unitOffset(info, level, lowest);
  const size = unitSize(info, level);
  const theta = artifact.directions.subarray(start, start + size);
  const shifts = base.map((b, i) => {
    const before = (level === 'layer' ? b.layer : b.head).subarray(start, start + size);
    const after = (level === 'layer' ? revised[i].layer : revised[i].head).subarray(start, start + size);
    return dot(after, theta) - dot(before, theta);
  });
  // Units of layers below the lowest revised one see no change at all.
  const below = unitOffset(info, level, { layer: lowest.layer, head: 0 });
  const unchangedBelow = base.every((b, i) => {
    const x = level === 'layer' ? b.layer : b.head;
    const y = level === 'layer' ? revised[i].layer : revised[i].head;
    return x.subarray(0, below).every((v, k) => v === y[k]);
  });
  return { shifts, expected: alpha * lowest.sigma, unchangedBelow };
}

describe('calibrate on the tiny pack', () => {
  let headArtifact: LoadedArtifact;

  it('writes a head-level MMS artifact that loads with its checksum and the decoder fingerprint', async () => {
    const out = join(work, 'head-mms');
    expect(await calibrateCli(out, ['--level', 'head', '--method', 'mms', '--strategy', 'multi-response', '--top-k', '3'])).toBe(0);
    headArtifact = loadArtifact(out, { expectedFingerprint: engine.info().fingerprint });
    const m = headArtifact.manifest;
    expect(m).toMatchObject({ method: 'mms', strategy: 'multi-response', level: 'head', positiveClass: 'safe', rankedBy: 'probe-accuracy' });
    expect(m.model).toMatchObject({ name: 'tiny-vlm', layers: 4, hidden: 128, heads: 4, headDim: 32 });
    expect(m.samples).toMatchObject({ positive: 8, negative: 8 });
    expect(m.selection).toHaveLength(3);
    for (const s of m.selection) {
      expect(s.sigma).toBeGreaterThan(0);
      const slice = headArtifact.directions.subarray(unitOffset(m.model, 'head', s), unitOffset(m.model, 'head', s) + 32);
      expect(Math.sqrt(dot(slice, slice))).toBeCloseTo(1, 5);
    }
    expect(headArtifact.directions.length).toBe(4 * 4 * 32);
    expect(Array.from(headArtifact.directions).filter((v) => v !== 0).length).toBeLessThanOrEqual(3 * 32);
    // A second run without --force refuses to overwrite a registered artifact.
    expect(await calibrateCli(out, ['--level', 'head', '--method', 'mms', '--strategy', 'multi-response'])).toBe(1);
  });

  it('refuses a tampered copy and another decoder', () => {
    const copy = join(work, 'tampered');
    cpSync(headArtifact.dir, copy, { recursive: true });
    const bytes = readFileSync(join(copy, 'vectors.bin'));
    const firstNonZero = headArtifact.directions.findIndex((v) => v !== 0);
    bytes.writeFloatLE(-headArtifact.directions[firstNonZero], firstNonZero * 4);
    writeFileSync(join(copy, 'vectors.bin'), bytes);
    expect(() => loadArtifact(copy, { expectedFingerprint: engine.info().fingerprint })).toThrow(
      expect.objectContaining({ code: 'artifact_checksum_mismatch' }),
    );
    expect(() => loadArtifact(headArtifact.dir, { expectedFingerprint: '0'.repeat(64) })).toThrow(
      expect.objectContaining({ code: 'artifact_fingerprint_mismatch' }),
    );
  });

  it.each(['last', 'all'] as const)('head level: the feed moves the revised head slice by alpha * sigma (positions %s)', async (positions) => {
    const { shifts, expected, unchangedBelow } = await measuredShift(headArtifact, 4, positions);
    for (const s of shifts) expect(Math.abs(s - expected)).toBeLessThan(1e-3);
    expect(unchangedBelow).toBe(true);
  });

  it('layer level (PWD, causal ranking): the feed moves the residual stream by alpha * sigma', async () => {
    const out = join(work, 'layer-pwd');
    expect(await calibrateCli(out, ['--level', 'layer', '--method', 'pwd', '--strategy', 'text-response', '--top-k', '2', '--causal'])).toBe(0);
    const artifact = loadArtifact(out, { expectedFingerprint: engine.info().fingerprint });
    expect(artifact.manifest).toMatchObject({ level: 'layer', method: 'pwd', rankedBy: 'causal-effect' });
    for (const s of artifact.manifest.selection) expect(typeof s.causalEffect).toBe('number');
    const { shifts, expected } = await measuredShift(artifact, 2.5, 'last');
    for (const s of shifts) expect(Math.abs(s - expected)).toBeLessThan(1e-3);
  });

  it('multi-instruction taps are read before the response and point toward the unsafe-instruction class', async () => {
    const { samples, baseDir } = readSamplesFile(join(FIXTURES, 'multi-instruction.jsonl'));
    const contrast = buildContrastSet(samples, 'multi-instruction', fileImageReader(baseDir));
    expect(contrast.requests.every((r) => r.response === undefined && r.image)).toBe(true);
    const result = await calibrate(engine, contrast, { level: 'head', method: 'mms', causal: true, topK: 2 });
    expect(result.draft.positiveClass).toBe('unsafe');
    expect(result.selected.every((s) => Number.isFinite(s.causalEffect!))).toBe(true);
  });
});

describe('config/profiles.example.json', () => {
  it('validates against the tiny pack (if the pack was rebuilt, regenerate the example artifact: docs/safety-methods.md)', () => {
    const profiles = RevisionProfiles.load(join(FIXTURES, '../../../../config/profiles.example.json'), engine.info());
    expect(profiles.names()).toEqual(['none', 'tiny-head-mms', 'tiny-head-mms-one', 'default']);
    expect(profiles.resolve('tiny-head-mms', 'anyone').feed?.head).toHaveLength(4 * 4 * 32);
    expect(() => profiles.resolve('tiny-head-mms-one', 'globex')).toThrow(expect.objectContaining({ code: 'profile_not_allowed' }));
  });
});
