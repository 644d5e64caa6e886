import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ALIGNER_DEFAULTS, ETA_DEFAULTS, etaConfigFromEnv, resolveAlignerConfig, resolveEtaConfig } from '../src/config';
import { quantile, quantileOf, transferThreshold } from '../src/thresholds';

describe('safety configuration', () => {
  it('defaults follow the reference code', () => {
    expect(ETA_DEFAULTS).toMatchObject({ tauPre: 0.16, tauPost: 0.06, policy: 'answer' });
    expect(ETA_DEFAULTS.unsafeImageText).toBe('The image contains unsafe/porn/violent/politic/physical harmful/illegal/privacy contents.');
    expect(ALIGNER_DEFAULTS).toMatchObject({
      prefix: 'As an AI assistant',
      n: 5,
      topK: 5,
      temperature: 1.5,
      maxSentenceTokens: 70,
      maxTotalTokens: 1024,
      clipWeight: 1,
    });
  });
  it('rejects invalid values and reads env overrides', () => {
    expect(() => resolveEtaConfig({ policy: 'any' as never })).toThrow(/policy/);
    expect(() => resolveAlignerConfig({ n: 0 })).toThrow(/n must/);
    // A folder without config/eta.json: the reference defaults apply.
    const bare = mkdtempSync(join(tmpdir(), 'eta-'));
    expect(etaConfigFromEnv({ ETA_TAU_PRE: '0.3', ETA_POLICY: 'either' }, bare)).toMatchObject({ tauPre: 0.3, tauPost: 0.06, policy: 'either' });
    expect(() => etaConfigFromEnv({ ETA_TAU_POST: 'abc' }, bare)).toThrow(/ETA_TAU_POST/);
  });

  it('takes thresholds fitted for the loaded packs from the thresholds file, under env overrides', () => {
    const dir = mkdtempSync(join(tmpdir(), 'eta-'));
    mkdirSync(join(dir, 'config'));
    writeFileSync(join(dir, 'config', 'eta.json'), JSON.stringify({ tauPre: 0.2, tauPost: -0.5 }));
    expect(etaConfigFromEnv({}, dir)).toMatchObject({ tauPre: 0.2, tauPost: -0.5 });
    expect(etaConfigFromEnv({ ETA_TAU_POST: '1' }, dir)).toMatchObject({ tauPre: 0.2, tauPost: 1 });
    writeFileSync(join(dir, 'other.json'), JSON.stringify({ tauPre: 0.3, tauPost: 0.1 }));
    expect(etaConfigFromEnv({ ETA_CONFIG: 'other.json' }, dir)).toMatchObject({ tauPre: 0.3, tauPost: 0.1 });
    expect(() => etaConfigFromEnv({ ETA_CONFIG: 'missing.json' }, dir)).toThrow();
  });
});

describe('thresholds', () => {
  it('quantile interpolates linearly (numpy default)', () => {
    expect(quantile([4, 1, 3, 2], 0.5)).toBe(2.5);
    expect(quantile([1, 2, 3, 4, 5], 0.25)).toBe(2);
    expect(quantileOf([1, 2, 3, 4], 3)).toBe(0.5);
  });
  it('moves a threshold to the same quantile of another score scale', () => {
    // Reference scores 0.10..0.19 with tau 0.16 (60% below) -> 60th percentile of the target scores.
    const ref = [0.1, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18, 0.19];
    const target = ref.map((s) => s * 10 + 1);
    expect(transferThreshold(ref, 0.16, target)).toBeCloseTo(quantile(target, 0.6), 12);
  });
});
