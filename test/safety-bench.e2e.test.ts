/**
 * Smoke run of the FactorySafe benchmark (`npm run bench -- safety`) on a few items of the shipped test split,
 * through the runtime and the workers' safety code, with its figures recounted independently.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isUnsafe, readEvalSet } from '@libs/evaluation';
import { BLOCKED_ANSWER, ETA_PREFIX } from '@libs/safety';
import { openVlmEngine } from '@libs/vlm';
import { runSafetyBench } from '../bench/safety';

const ROOT = resolve(__dirname, '..');

describe('FactorySafe benchmark smoke run', () => {
  it('runs none, ETA and IAR + ETA on a few items and reports what its answers show', async () => {
    const run = await runSafetyBench(['--limit', '9', '--configs', 'none,eta,iar+eta', '--seeds', '2']);
    expect(run.results.map((r) => r.name)).toEqual(['none', 'ETA', 'IAR head MMS multi-response + ETA']);
    const items = readEvalSet(join(ROOT, 'data/factorysafe/test/test.jsonl'), 9);
    expect(run.items).toBe(9);
    expect(run.cases).toBe(items.reduce((n, i) => n + i.modes.length, 0));

    for (const r of run.results) {
      const judged = run.judged.get(r.name)!;
      expect(judged).toHaveLength(run.cases);
      // Recount the image+harmful ASR from the answers themselves.
      const harmful = judged.filter((j) => j.case.item.kind === 'harmful' && j.case.mode === 'image');
      expect(r.metrics.imageHarmfulAsr.value).toBeCloseTo(harmful.filter((j) => isUnsafe(j.case.item, j.answer)).length / harmful.length, 10);
      for (const m of [r.metrics.imageHarmfulAsr, r.metrics.textHarmfulAsr, r.metrics.overRefusal, r.metrics.benignAccuracy]) {
        expect(m.low).toBeLessThanOrEqual(m.value);
        expect(m.high).toBeGreaterThanOrEqual(m.value);
      }
    }
    // Aligned answers carry the shallow-alignment prefix; blocked ones show the fixed refusal; the rest are the
    // plain greedy answers.
    const none = run.judged.get('none')!;
    run.judged.get('ETA')!.forEach((j, i) => {
      if (j.aligned) expect(j.answer.trimStart().startsWith(ETA_PREFIX)).toBe(true);
      else expect([none[i].answer, BLOCKED_ANSWER]).toContain(j.answer);
    });
    // Every ETA config ran once per seed; its per-seed counts are recounted from that seed's answers.
    expect(run.seedRows.map((r) => r.name)).toEqual(['ETA', 'IAR head MMS multi-response + ETA']);
    for (const row of run.seedRows) {
      expect(row.perSeed.map((p) => p.seed)).toEqual([0, 1]);
      for (const p of row.perSeed) {
        const judged = run.judged.get(`${row.name} [seed ${p.seed}]`)!;
        expect(p.aligned).toBe(judged.filter((j) => j.aligned).length);
        expect(p.alignedHarmful).toBe(judged.filter((j) => j.aligned && isUnsafe(j.case.item, j.answer)).length);
      }
      const worst = Math.max(...row.perSeed.map((p) => p.result.metrics.imageHarmfulAsr.value));
      expect(run.results.find((r) => r.name === row.name)!.metrics.imageHarmfulAsr.value).toBe(worst);
    }
    // The detector table covers the three signals, each on the cases that have it.
    expect(run.detectorRows.map((r) => r.signal.split(' ')[0])).toEqual(['hidden-state', 'hidden-state', 'CLIP', 'reward', 'reward']);
    for (const r of run.detectorRows) {
      expect(r.metrics.auroc).toBeGreaterThanOrEqual(0);
      expect(r.metrics.auroc).toBeLessThanOrEqual(1);
    }

    // The benchmark's answers are the model's: an independent greedy run of one harmful image case agrees.
    const first = none.find((j) => j.case.item.kind === 'harmful' && j.case.mode === 'image')!;
    const engine = await openVlmEngine({ packDir: join(ROOT, 'models/factory-vlm'), thread: 'inline' });
    try {
      const image = readFileSync(join(ROOT, 'data/factorysafe/test', first.case.item.image!));
      const [answer] = await engine.generate([{ prompt: first.case.item.prompt, image, maxNewTokens: 48 }]);
      expect(answer.text).toBe(first.answer);
    } finally {
      await engine.close();
    }
  });
});
