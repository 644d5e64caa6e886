/** Decode-loop behaviour on the tiny pack: sampling, stopping, streaming, batching independence. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalVlmEngine } from '@libs/vlm';
import { TINY_VLM, goldenImage, goldenPrompt, loadVlmGolden } from './golden';

const golden = loadVlmGolden();
const prompt = goldenPrompt(golden.messages);
const image = goldenImage();
const greedyTokens = golden.cases.none.tokens;

describe('generation', () => {
  let engine: LocalVlmEngine;
  beforeAll(async () => {
    engine = await LocalVlmEngine.open({ packDir: TINY_VLM });
  });
  afterAll(() => engine.close());

  it('samples reproducibly per request seed, in any batch', async () => {
    const sampling = { temperature: 1.2, topK: 20, topP: 0.95, seed: 7 };
    const [alone] = await engine.generate([{ prompt, image, sampling, maxNewTokens: 16, ignoreEos: true }]);
    const batched = await engine.generate([
      { prompt: 'Is the guard closed?', sampling: { ...sampling, seed: 99 }, maxNewTokens: 16, ignoreEos: true },
      { prompt, image, sampling, maxNewTokens: 16, ignoreEos: true },
    ]);
    expect(batched[1].tokens).toEqual(alone.tokens);
    const [other] = await engine.generate([{ prompt, image, sampling: { ...sampling, seed: 8 }, maxNewTokens: 16, ignoreEos: true }]);
    expect(other.tokens).not.toEqual(alone.tokens);
  });

  it('top-k 1 sampling is greedy decoding', async () => {
    const [r] = await engine.generate([{ prompt, image, sampling: { temperature: 1, topK: 1, seed: 3 }, maxNewTokens: 12, ignoreEos: true }]);
    expect(r.tokens).toEqual(greedyTokens);
  });

  it('stops at max new tokens, stop tokens and stop strings', async () => {
    const [byLength] = await engine.generate([{ prompt, image, maxNewTokens: 5 }]);
    expect(byLength.tokens).toEqual(greedyTokens.slice(0, 5));
    expect(byLength.finishReason).toBe('length');

    const [byToken] = await engine.generate([{ prompt, image, maxNewTokens: 12, stopTokenIds: [greedyTokens[4]] }]);
    expect(byToken.tokens).toEqual(greedyTokens.slice(0, greedyTokens.indexOf(greedyTokens[4]) + 1));
    expect(byToken.finishReason).toBe('stop_token');

    const stop = golden.cases.none.text.slice(10, 14);
    const [byString] = await engine.generate([{ prompt, image, maxNewTokens: 12, stopStrings: [stop] }]);
    expect(byString.finishReason).toBe('stop_string');
    expect(byString.text.endsWith(stop)).toBe(true);
    expect(golden.cases.none.text.startsWith(byString.text)).toBe(true);
  });

  it('streams token deltas that add up to the answer, prefix included in the text', async () => {
    const deltas: string[] = [];
    const ids: number[] = [];
    const [r] = await engine.generate([{ prompt, image, answerPrefix: 'As an AI assistant', maxNewTokens: 8 }], (i, id, d) => {
      expect(i).toBe(0);
      ids.push(id);
      deltas.push(d);
    });
    expect(ids).toEqual(r.tokens);
    expect('As an AI assistant' + deltas.join('')).toBe(r.text);
  });

  it('returns one tap frame per forward call', async () => {
    const [r] = await engine.generate([{ prompt, image, maxNewTokens: 4, ignoreEos: true, taps: true }]);
    expect(r.taps).toHaveLength(4);
    expect(r.taps![0].layer).toHaveLength(golden.dims.layers * golden.dims.hidden);
    expect(r.taps![0].head).toHaveLength(golden.dims.layers * golden.dims.heads * golden.dims.head_dim);
  });

  it('rejects revision vectors of the wrong size', async () => {
    await expect(engine.generate([{ prompt, revision: { layer: new Float32Array(3), positions: 'last' } }])).rejects.toThrow(/layers x hidden/);
  });
});
