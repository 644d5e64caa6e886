import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeArtifact } from '../src/artifact';
import { RevisionProfileError, RevisionProfiles } from '../src/profiles';
import { FINGERPRINT, headDraft, modelInfo } from './helpers';

const model = modelInfo({ fingerprint: FINGERPRINT, layers: 2, hidden: 8, heads: 2, headDim: 4 });

function setup(profiles: unknown[], ext = 'json') {
  const root = mkdtempSync(join(tmpdir(), 'profiles-'));
  const { draft, directions } = headDraft();
  const { artifactSha256 } = writeArtifact(join(root, 'artifacts', 'heads'), draft, directions);
  const fill = (p: Record<string, unknown>) => ({ artifact: 'artifacts/heads', artifactSha256, level: 'head', tenants: ['*'], ...p });
  const config = { profiles: profiles.map((p) => fill(p as Record<string, unknown>)) };
  const path = join(root, `profiles.${ext}`);
  writeFileSync(path, ext === 'json' ? JSON.stringify(config) : toYaml(config));
  return { root, path, artifactSha256 };
}

function toYaml(config: { profiles: Record<string, unknown>[] }): string {
  return `profiles:\n${config.profiles
    .map(
      (p) =>
        `  - ${Object.entries(p)
          .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
          .join('\n    ')}`,
    )
    .join('\n')}\n`;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RevisionProfileError);
    return (err as RevisionProfileError).code;
  }
  return undefined;
}

describe('RevisionProfiles', () => {
  it('builds alpha * sigma * direction on the selected heads and zeros elsewhere', () => {
    const { path, artifactSha256 } = setup([{ name: 'safe-heads', alpha: 3, positions: 'generated' }]);
    const profiles = RevisionProfiles.load(path, model);
    const r = profiles.resolve('safe-heads', 'acme');
    expect(r.artifactSha256).toBe(artifactSha256);
    expect(r.feed?.positions).toBe('generated');
    const expected = new Float32Array(16);
    expected.set([3 * 2 * 0.6, 3 * 2 * 0.8, 0, 0], 4); // L0.H1, sigma 2
    expected.set([0, 0, 3 * 0.5, 0], 8); // L1.H0, sigma 0.5
    r.feed!.head!.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 5));
    expect(r.feed!.layer).toBeUndefined();
    // A copy per call: mutating one job's feed does not leak into the next.
    r.feed!.head![4] = 99;
    expect(profiles.resolve('safe-heads', 'acme').feed!.head![4]).toBeCloseTo(3.6, 5);
  });

  it('applies a subset of the artifact heads, from YAML', () => {
    const { path } = setup([{ name: 'one-head', alpha: 1, heads: [[1, 0]] }], 'yaml');
    const feed = RevisionProfiles.load(path, model).resolve('one-head', 't').feed!;
    expect(Array.from(feed.head!).filter((v) => v !== 0)).toEqual([0.5]);
    expect(feed.positions).toBe('last');
  });

  it('has a built-in none and enforces tenants', () => {
    const { path } = setup([{ name: 'acme-only', alpha: 1, tenants: ['acme'] }]);
    const profiles = RevisionProfiles.load(path, model);
    expect(profiles.resolve('none', 'anyone')).toMatchObject({ feed: undefined, artifactSha256: null });
    expect(profiles.resolve('acme-only', 'acme').feed).toBeDefined();
    expect(codeOf(() => profiles.resolve('acme-only', 'globex'))).toBe('profile_not_allowed');
    expect(codeOf(() => profiles.resolve('nope', 'acme'))).toBe('unknown_profile');
  });

  it('stops start-up on a wrong decoder fingerprint', () => {
    const { path } = setup([{ name: 'p', alpha: 1 }]);
    expect(codeOf(() => RevisionProfiles.load(path, { ...model, fingerprint: 'c'.repeat(64) }))).toBe('artifact_fingerprint_mismatch');
  });

  it('stops start-up when the artifact is not the registered one', () => {
    const { path, root } = setup([{ name: 'p', alpha: 1 }]);
    const config = JSON.parse(readFileSync(path, 'utf8'));
    config.profiles[0].artifactSha256 = 'd'.repeat(64);
    writeFileSync(path, JSON.stringify(config));
    expect(codeOf(() => RevisionProfiles.load(path, model))).toBe('artifact_checksum_mismatch');
    // A tampered vectors.bin is caught even with the right manifest sha256.
    const fresh = setup([{ name: 'p', alpha: 1 }]);
    const vec = join(fresh.root, 'artifacts', 'heads', 'vectors.bin');
    const bytes = readFileSync(vec);
    bytes[20] ^= 0xff;
    writeFileSync(vec, bytes);
    expect(codeOf(() => RevisionProfiles.load(fresh.path, model))).toBe('artifact_checksum_mismatch');
    expect(root).toBeTruthy();
  });

  it('rejects invalid configuration', () => {
    expect(codeOf(() => RevisionProfiles.load(setup([{ name: 'p', alpha: 1, heads: [[0, 0]] }]).path, model))).toBe('profiles_config_invalid'); // not in artifact
    expect(codeOf(() => RevisionProfiles.load(setup([{ name: 'p', alpha: 1, level: 'layer' }]).path, model))).toBe('profiles_config_invalid');
    expect(codeOf(() => RevisionProfiles.load(setup([{ name: 'none', alpha: 1 }]).path, model))).toBe('profiles_config_invalid');
    expect(
      codeOf(() =>
        RevisionProfiles.load(
          setup([
            { name: 'p', alpha: 1 },
            { name: 'p', alpha: 2 },
          ]).path,
          model,
        ),
      ),
    ).toBe('profiles_config_invalid');
    expect(codeOf(() => RevisionProfiles.load(setup([{ name: 'p', alpha: 1, extra: true }]).path, model))).toBe('profiles_config_invalid');
    expect(codeOf(() => RevisionProfiles.load(setup([{ name: 'p', alpha: 1 }]).path, { ...model, revisable: false }))).toBe('model_not_revisable');
    expect(codeOf(() => RevisionProfiles.load(setup([{ name: 'p', alpha: 1 }]).path, { ...model, heads: 4, headDim: 2 }))).toBe('artifact_shape_mismatch');
  });

  it('reads the path from REVISION_PROFILES; a set but missing path is an error, none without config', () => {
    const { path } = setup([{ name: 'p', alpha: 1 }]);
    expect(RevisionProfiles.fromEnv(model, { REVISION_PROFILES: path }).names()).toEqual(['none', 'p', 'default']);
    expect(codeOf(() => RevisionProfiles.fromEnv(model, { REVISION_PROFILES: '/nonexistent/profiles.json' }))).toBe('profiles_config_invalid');
    expect(RevisionProfiles.fromEnv(model, {}, mkdtempSync(join(tmpdir(), 'empty-'))).names()).toEqual(['none', 'default']);
  });

  it('`default` resolves per model from the file defaults; profiles of another model are skipped (issue 12 item 7)', () => {
    const { root, artifactSha256 } = setup([]);
    const entry = (name: string, extra: Record<string, unknown> = {}) => ({
      name,
      artifact: 'artifacts/heads',
      artifactSha256,
      level: 'head',
      alpha: 2,
      tenants: ['*'],
      ...extra,
    });
    const config = {
      profiles: [entry('mine', { model: 'synthetic' }), entry('theirs', { model: 'factory-vlm', artifactSha256: 'b'.repeat(64) }), entry('any')],
      defaults: { synthetic: 'mine', 'factory-vlm': 'theirs' },
    };
    const profiles = RevisionProfiles.fromConfig(config, model, root);
    // 'theirs' is for another model: never loaded here (its pinned sha256 is not even checked), nor resolvable.
    expect(profiles.skipped).toEqual(['theirs']);
    expect(profiles.names()).toEqual(['none', 'mine', 'any', 'default']);
    const d = profiles.resolve('default', 'anyone');
    expect(d.profile.name).toBe('mine');
    expect(d.feed!.head).toEqual(profiles.resolve('mine', 'anyone').feed!.head);
    expect(codeOf(() => profiles.resolve('theirs', 'anyone'))).toBe('unknown_profile');
    // A model without a default gets no revision; a default must exist and allow every tenant.
    const other = RevisionProfiles.fromConfig({ ...config, defaults: { 'factory-vlm': 'theirs' } }, model, root);
    expect(other.resolve('default', 'x')).toMatchObject({ feed: undefined, profile: { name: 'none' } });
    expect(codeOf(() => RevisionProfiles.fromConfig({ ...config, defaults: { synthetic: 'nope' } }, model, root))).toBe('profiles_config_invalid');
    expect(codeOf(() => RevisionProfiles.fromConfig({ ...config, defaults: { synthetic: 'theirs' } }, model, root))).toBe('profiles_config_invalid');
    const restricted = { profiles: [entry('mine', { tenants: ['acme'] })], defaults: { synthetic: 'mine' } };
    expect(codeOf(() => RevisionProfiles.fromConfig(restricted, model, root))).toBe('profiles_config_invalid');
    expect(codeOf(() => RevisionProfiles.fromConfig({ profiles: [entry('default')] }, model, root))).toBe('profiles_config_invalid');
  });
});
