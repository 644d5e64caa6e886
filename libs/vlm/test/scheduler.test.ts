/**
 * Continuous batching: rows join a running decode batch at step boundaries and leave when they finish, and a row's
 * tokens (greedy and seeded), taps and text are the ones it gets decoded alone and the PyTorch reference's.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalVlmEngine, admissibleRows, resolveSchedulerOptions, type GenerationRequest, type RevisionFeed } from '@libs/vlm';
import { TINY_VLM, goldenImage, goldenPrompt, loadVlmGolden, maxAbsDiff } from './golden';

const golden = loadVlmGolden();
const prompt = goldenPrompt(golden.messages);
const textPrompt = goldenPrompt(golden.text_only.messages);
const image = goldenImage();

function feedFor(name: keyof typeof golden.cases): RevisionFeed | undefined {
  const c = golden.cases[name];
  if (!c.level) return undefined;
  const data = Float32Array.from(golden.revision[c.level].data);
  return c.level === 'layer' ? { layer: data, positions: c.positions! } : { head: data, positions: c.positions! };
}

/** Resolves once `count` tokens of the running request streamed: the batch is mid-decode then. */
function afterTokens(count: number): { onToken: () => void; reached: Promise<void> } {
  let seen = 0;
  let release!: () => void;
  const reached = new Promise<void>((r) => (release = r));
  return {
    onToken: () => {
      if (++seen === count) release();
    },
    reached,
  };
}

describe('continuous batching on the tiny pack', () => {
  let engine: LocalVlmEngine;
  beforeAll(async () => {
    engine = await LocalVlmEngine.open({ packDir: TINY_VLM, scheduler: { maxBatchSize: 8 } });
  });
  afterAll(() => engine.close());

  const long: GenerationRequest = { prompt, image, revision: feedFor('head_last'), maxNewTokens: golden.max_new_tokens, ignoreEos: true };

  it('rows that join a running batch mid-way get their reference tokens and their unbatched taps', async () => {
    const sampled: GenerationRequest = { prompt: textPrompt, sampling: { temperature: 1.3, topK: 30, topP: 0.9, seed: 11 }, maxNewTokens: 9, ignoreEos: true };
    const tapped: GenerationRequest = { prompt, image, revision: feedFor('layer_all'), maxNewTokens: 5, ignoreEos: true, taps: true };
    const [aloneSampled] = await engine.generate([sampled]);
    const [aloneTapped] = await engine.generate([tapped]);

    const before = engine.schedulerStats();
    const mid = afterTokens(3);
    const running = engine.generate([long], mid.onToken);
    await mid.reached;
    const joined = engine.generate([{ prompt, image, maxNewTokens: golden.max_new_tokens, ignoreEos: true }, sampled, tapped]);
    const [[first], [greedy, seeded, withTaps]] = await Promise.all([running, joined]);

    expect(first.tokens).toEqual(golden.cases.head_last.tokens);
    expect(greedy.tokens).toEqual(golden.cases.none.tokens);
    expect(greedy.text).toBe(golden.cases.none.text);
    expect(seeded.tokens).toEqual(aloneSampled.tokens);
    expect(withTaps.tokens).toEqual(golden.cases.layer_all.tokens.slice(0, 5));
    expect(withTaps.taps).toHaveLength(aloneTapped.taps!.length);
    withTaps.taps!.forEach((frame, i) => {
      expect(maxAbsDiff(frame.layer, aloneTapped.taps![i].layer)).toBeLessThan(1e-4);
      expect(maxAbsDiff(frame.head, aloneTapped.taps![i].head)).toBeLessThan(1e-4);
    });
    // They did share steps: more rows per step than one request alone would give.
    const after = engine.schedulerStats();
    const steps = after.decodeSteps - before.decodeSteps;
    expect((after.rowsStepped - before.rowsStepped) / steps).toBeGreaterThan(1.5);
    expect(after.maxBatch).toBeGreaterThanOrEqual(3);
  });

  it('a batch with no revision and no taps steps on the plain decoder with its reference tokens; a revised or tapped row keeps the revisable one', async () => {
    const plainSteps = async (request: GenerationRequest) => {
      const before = engine.schedulerStats();
      const [result] = await engine.generate([request]);
      const after = engine.schedulerStats();
      return { result, steps: after.decodeSteps - before.decodeSteps, plain: after.plainSteps - before.plainSteps };
    };
    const unrevised = await plainSteps({ prompt, image, maxNewTokens: golden.max_new_tokens, ignoreEos: true });
    expect(unrevised.result.tokens).toEqual(golden.cases.none.tokens);
    expect(unrevised.steps).toBeGreaterThan(0);
    expect(unrevised.plain).toBe(unrevised.steps);
    const revised = await plainSteps({ prompt, image, revision: feedFor('layer_last'), maxNewTokens: golden.max_new_tokens, ignoreEos: true });
    expect(revised.result.tokens).toEqual(golden.cases.layer_last.tokens);
    expect(revised.plain).toBe(0);
    const tapped = await plainSteps({ prompt, image, maxNewTokens: 4, ignoreEos: true, taps: true });
    expect(tapped.result.taps!.length).toBe(4);
    expect(tapped.plain).toBe(0);
    // VLM_PLAIN_DECODER=false: the revisable decoder fed zeros, the same tokens.
    const revisableOnly = await LocalVlmEngine.open({ packDir: TINY_VLM, plainDecoder: false });
    try {
      const [result] = await revisableOnly.generate([{ prompt, image, maxNewTokens: golden.max_new_tokens, ignoreEos: true }]);
      expect(result.tokens).toEqual(golden.cases.none.tokens);
      expect(revisableOnly.schedulerStats().plainSteps).toBe(0);
    } finally {
      await revisableOnly.close();
    }
  });

  it('separate generate calls (one per job) fuse into one batch', async () => {
    const before = engine.schedulerStats();
    const calls = Array.from({ length: 6 }, (_, i) =>
      engine.generate([{ prompt: i % 2 ? textPrompt : prompt, image: i % 2 ? undefined : image, maxNewTokens: golden.max_new_tokens, ignoreEos: true }]),
    );
    const results = (await Promise.all(calls)).map(([r]) => r.tokens);
    results.forEach((tokens, i) => expect(tokens).toEqual(i % 2 ? golden.text_only.tokens : golden.cases.none.tokens));
    const after = engine.schedulerStats();
    // Six rows of the same length decoded together: far fewer steps than 6 x (max_new_tokens - 1).
    expect(after.decodeSteps - before.decodeSteps).toBeLessThan(2 * golden.max_new_tokens);
  });

  it('the rows of one call start together: one prefill, and every step carries all of them', async () => {
    // The first row of a call used to start the idle engine alone (the loop began inside its submit, before the
    // call's other rows were queued), so it was prefilled and stepped by itself and the rest waited up to maxWaitMs.
    const before = engine.schedulerStats();
    await engine.generate(Array.from({ length: 4 }, () => ({ prompt: textPrompt, maxNewTokens: golden.max_new_tokens, ignoreEos: true })));
    const after = engine.schedulerStats();
    const steps = after.decodeSteps - before.decodeSteps;
    expect(after.rowsStepped - before.rowsStepped).toBe(4 * steps);
    expect(after.forwardCalls - before.forwardCalls).toBe(steps + 1);
  });

  it("each result names its batches: the rows prefilled with it and the largest decode step it joined (the stage span's attributes)", async () => {
    const results = await engine.generate(Array.from({ length: 3 }, () => ({ prompt: textPrompt, maxNewTokens: golden.max_new_tokens, ignoreEos: true })));
    for (const r of results) expect(r.batch).toEqual({ prefill: 3, maxDecode: 3 });
    const [alone] = await engine.generate([{ prompt: textPrompt, maxNewTokens: 2, ignoreEos: true }]);
    expect(alone.batch).toEqual({ prefill: 1, maxDecode: 1 });
  });

  it('a row that leaves early does not disturb the rows that stay', async () => {
    const [short, longer] = await engine.generate([
      { prompt, image, maxNewTokens: 2, ignoreEos: true },
      { prompt: textPrompt, maxNewTokens: golden.max_new_tokens, ignoreEos: true },
    ]);
    expect(short.tokens).toEqual(golden.cases.none.tokens.slice(0, 2));
    expect(short.finishReason).toBe('length');
    expect(longer.tokens).toEqual(golden.text_only.tokens);
  });

  it('streams deltas that add up to the text, cut after a stop string found across tokens', async () => {
    const stop = golden.cases.none.text.slice(9, 15);
    const deltas: string[] = [];
    const mid = afterTokens(2);
    const running = engine.generate([long], mid.onToken);
    await mid.reached;
    const [r] = await engine.generate([{ prompt, image, maxNewTokens: golden.max_new_tokens, stopStrings: [stop] }], (_, __, d) => deltas.push(d));
    await running;
    expect(r.finishReason).toBe('stop_string');
    expect(r.text.endsWith(stop)).toBe(true);
    expect(golden.cases.none.text.startsWith(r.text)).toBe(true);
    expect(deltas.join('')).toBe(r.text);
  });

  it('a malformed request fails alone; rows running beside it finish', async () => {
    const running = engine.generate([long]);
    await expect(engine.generate([{ prompt, revision: { layer: new Float32Array(3), positions: 'last' } }])).rejects.toThrow(/layers x hidden/);
    expect((await running)[0].tokens).toEqual(golden.cases.head_last.tokens);
  });
});

describe('continuous batching under a batch-size limit', () => {
  let engine: LocalVlmEngine;
  beforeAll(async () => {
    engine = await LocalVlmEngine.open({ packDir: TINY_VLM, scheduler: { maxBatchSize: 2 } });
  });
  afterAll(() => engine.close());

  it('rows past the limit wait and join as others leave; every row gets its reference tokens', async () => {
    const requests: GenerationRequest[] = [
      { prompt, image, maxNewTokens: 3, ignoreEos: true },
      { prompt: textPrompt, maxNewTokens: golden.max_new_tokens, ignoreEos: true },
      { prompt, image, revision: feedFor('layer_last'), maxNewTokens: golden.max_new_tokens, ignoreEos: true },
      { prompt, image, revision: feedFor('head_all'), maxNewTokens: golden.max_new_tokens, ignoreEos: true },
    ];
    const results = await Promise.all(requests.map((r) => engine.generate([r]).then(([x]) => x.tokens)));
    expect(results).toEqual([golden.cases.none.tokens.slice(0, 3), golden.text_only.tokens, golden.cases.layer_last.tokens, golden.cases.head_all.tokens]);
    expect(engine.schedulerStats().maxBatch).toBe(2);
  });
});

/** The FactorySafe VLM's PyTorch goldens: greedy answers to its reference prompts (read, never hard-coded). */
const FACTORY_VLM = resolve(__dirname, '../../../models/factory-vlm');
interface FactoryCase {
  image: string | null;
  prompt: string;
  tokens: number[];
  text: string;
}
const factoryCases: FactoryCase[] = JSON.parse(readFileSync(join(FACTORY_VLM, 'reference', 'golden.json'), 'utf8')).cases;

describe('continuous batching on models/factory-vlm', () => {
  let engine: LocalVlmEngine;
  beforeAll(async () => {
    engine = await LocalVlmEngine.open({ packDir: FACTORY_VLM });
  });
  afterAll(() => engine.close());

  it('each reference case, joining the running batch one after another, decodes its golden answer', async () => {
    const ask = (c: FactoryCase) =>
      engine.generate([{ prompt: c.prompt, image: c.image ? readFileSync(join(FACTORY_VLM, 'reference', c.image)) : undefined, maxNewTokens: 64 }]);
    const pending: Promise<{ tokens: number[]; text: string }[]>[] = [];
    for (const c of factoryCases) {
      const mid = afterTokens(2);
      pending.push(
        engine.generate(
          [{ prompt: c.prompt, image: c.image ? readFileSync(join(FACTORY_VLM, 'reference', c.image)) : undefined, maxNewTokens: 64 }],
          mid.onToken,
        ),
      );
      await mid.reached;
    }
    const results = (await Promise.all(pending)).map(([r]) => r);
    results.forEach((r, i) => {
      expect(r.tokens, factoryCases[i].prompt).toEqual(factoryCases[i].tokens);
      expect(r.text).toBe(factoryCases[i].text);
    });
    // And the unbatched path agrees.
    const [alone] = await ask(factoryCases[factoryCases.length - 1]);
    expect(alone.tokens).toEqual(factoryCases[factoryCases.length - 1].tokens);
  });
});

describe('admission budgets (TGI next_batch)', () => {
  const options = resolveSchedulerOptions({ maxBatchSize: 4, minBatchSize: 2, maxPrefillTokens: 100, maxBatchTokens: 300, maxWaitMs: 50 });
  const row = (prefillTokens: number, reservedTokens = prefillTokens + 10) => ({ prefillTokens, reservedTokens });

  it('takes rows in order until the batch size, prefill or total token budget would be passed', () => {
    expect(admissibleRows([row(40), row(40), row(40)], { rows: 0, reservedTokens: 0 }, options, 0)).toBe(2);
    expect(admissibleRows([row(10), row(10), row(10), row(10)], { rows: 2, reservedTokens: 0 }, options, 0)).toBe(2);
    expect(admissibleRows([row(10, 100), row(10, 100)], { rows: 1, reservedTokens: 150 }, options, 100)).toBe(1);
  });

  it('always admits the first row of an idle engine, however large', () => {
    expect(admissibleRows([row(500, 900)], { rows: 0, reservedTokens: 0 }, options, 100)).toBe(1);
  });

  it('while a batch runs, holds fewer than the minimum back until the oldest has waited maxWaitMs', () => {
    expect(admissibleRows([row(10)], { rows: 1, reservedTokens: 10 }, options, 10)).toBe(0);
    expect(admissibleRows([row(10)], { rows: 1, reservedTokens: 10 }, options, 60)).toBe(1);
    expect(admissibleRows([row(10), row(10)], { rows: 1, reservedTokens: 10 }, options, 10)).toBe(2);
  });

  it('starts an idle engine at once, and never waits for more rows than there are free slots', () => {
    expect(admissibleRows([row(10)], { rows: 0, reservedTokens: 0 }, options, 0)).toBe(1);
    const wide = resolveSchedulerOptions({ maxBatchSize: 4, minBatchSize: 8, maxWaitMs: 50 });
    expect(admissibleRows([row(10)], { rows: 3, reservedTokens: 30 }, wide, 0)).toBe(1);
  });

  it('rejects impossible settings', () => {
    expect(() => resolveSchedulerOptions({ maxBatchSize: 0 })).toThrow(/maxBatchSize/);
  });
});
