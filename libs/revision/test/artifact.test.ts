import { mkdtempSync, readFileSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ArtifactError, loadArtifact, sha256, writeArtifact } from '../src/artifact';
import { FINGERPRINT, headDraft } from './helpers';

const fresh = () => mkdtempSync(join(tmpdir(), 'artifact-'));

describe('artifact', () => {
  it('round-trips manifest and vectors and reports the manifest sha256', () => {
    const dir = fresh();
    const { draft, directions } = headDraft();
    const written = writeArtifact(dir, draft, directions);
    const loaded = loadArtifact(dir, { expectedFingerprint: FINGERPRINT, expectedSha256: written.artifactSha256 });
    expect(Array.from(loaded.directions)).toEqual(Array.from(directions));
    expect(loaded.manifest.selection).toEqual(draft.selection);
    expect(loaded.manifest.formatVersion).toBe(1);
    expect(loaded.manifest.vectors.sha256).toBe(sha256(readFileSync(join(dir, 'vectors.bin'))));
    expect(loaded.artifactSha256).toBe(sha256(readFileSync(join(dir, 'manifest.json'))));
    // float32 little-endian on disk.
    expect(readFileSync(join(dir, 'vectors.bin')).readFloatLE(4 * 4)).toBeCloseTo(0.6, 6);
  });

  it('refuses a tampered vectors.bin', () => {
    const dir = fresh();
    const { draft, directions } = headDraft();
    writeArtifact(dir, draft, directions);
    const bytes = readFileSync(join(dir, 'vectors.bin'));
    bytes.writeFloatLE(-0.6, 16);
    writeFileSync(join(dir, 'vectors.bin'), bytes);
    expect(() => loadArtifact(dir)).toThrow(expect.objectContaining({ name: 'ArtifactError', code: 'artifact_checksum_mismatch' }));
  });

  it('refuses an artifact computed on another decoder', () => {
    const dir = fresh();
    const { draft, directions } = headDraft();
    writeArtifact(dir, draft, directions);
    let err: unknown;
    try {
      loadArtifact(dir, { expectedFingerprint: 'b'.repeat(64) });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ArtifactError);
    expect((err as ArtifactError).code).toBe('artifact_fingerprint_mismatch');
    expect((err as ArtifactError).message).toMatch(/computed on decoder a{64}/);
  });

  it('refuses an edited manifest (sigma) when the registered sha256 is given', () => {
    const dir = fresh();
    const { draft, directions } = headDraft();
    const { artifactSha256 } = writeArtifact(dir, draft, directions);
    const copy = fresh();
    cpSync(dir, copy, { recursive: true });
    const m = JSON.parse(readFileSync(join(copy, 'manifest.json'), 'utf8'));
    m.selection[0].sigma = 200;
    writeFileSync(join(copy, 'manifest.json'), JSON.stringify(m, null, 2));
    expect(() => loadArtifact(copy)).not.toThrow();
    expect(() => loadArtifact(copy, { expectedSha256: artifactSha256 })).toThrow(expect.objectContaining({ code: 'artifact_checksum_mismatch' }));
  });

  it('names missing files, malformed manifests and unknown versions', () => {
    expect(() => loadArtifact(join(fresh(), 'nope'))).toThrow(expect.objectContaining({ code: 'artifact_missing' }));
    const dir = fresh();
    const { draft, directions } = headDraft();
    writeArtifact(dir, draft, directions);
    const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ ...m, formatVersion: 2 }));
    expect(() => loadArtifact(dir)).toThrow(expect.objectContaining({ code: 'artifact_unsupported_version' }));
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ ...m, selection: [{ layer: 5, head: 0, sigma: 1 }] }));
    expect(() => loadArtifact(dir)).toThrow(expect.objectContaining({ code: 'artifact_malformed' }));
    writeFileSync(join(dir, 'manifest.json'), '{');
    expect(() => loadArtifact(dir)).toThrow(expect.objectContaining({ code: 'artifact_malformed' }));
  });

  it('refuses to write directions of the wrong length', () => {
    const { draft } = headDraft();
    expect(() => writeArtifact(fresh(), draft, new Float32Array(3))).toThrow(expect.objectContaining({ code: 'artifact_shape_mismatch' }));
  });
});
