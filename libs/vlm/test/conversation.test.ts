/**
 * Stepwise best-of-N conversations: candidates are one batch forked from the prefix's KV cache, and the
 * accepted candidate's cache continues exactly as a fresh prefill of the same tokens would.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvCache } from '../src/kv-cache';
import { LocalVlmEngine, VlmModel, VlmProcessor, argmax } from '@libs/vlm';
import { TINY_VLM, goldenImage, goldenPrompt, loadVlmGolden } from './golden';

const golden = loadVlmGolden();
const prompt = goldenPrompt(golden.messages);
const image = goldenImage();
const prefix = 'As an AI assistant';

/** Independent greedy decode from explicit token ids (no cache forking), for comparison. */
async function greedyFromIds(model: VlmModel, processor: VlmProcessor, ids: number[], steps: number): Promise<number[]> {
  const { pixels } = await processor.encode({ prompt, image, assistantText: prefix });
  const hidden = model.hidden;
  const embeds = new Float32Array(ids.length * hidden);
  await model.embedTokens(ids, embeds, 0);
  const features = await model.encodeImage(pixels!);
  let row = 0;
  ids.forEach((id, i) => {
    if (id === model.pack.imageTokenId) embeds.set(features.subarray(row * hidden, ++row * hidden), i * hidden);
  });
  const { layers, kvHeads, headDim, vocabSize } = model.pack.text;
  let out = await model.forward({
    batch: 1,
    seq: ids.length,
    embeds,
    attentionMask: new BigInt64Array(ids.length).fill(1n),
    positionIds: BigInt64Array.from(ids.map((_, i) => BigInt(i))),
    cache: KvCache.empty(layers, 1, kvHeads, headDim),
  });
  const tokens: number[] = [];
  let length = ids.length;
  for (let s = 0; s < steps; s++) {
    const t = argmax(out.logits, out.logits.length - vocabSize, vocabSize);
    tokens.push(t);
    const e = new Float32Array(hidden);
    await model.embedTokens([t], e, 0);
    out = await model.forward({
      batch: 1,
      seq: 1,
      embeds: e,
      attentionMask: new BigInt64Array(length + 1).fill(1n),
      positionIds: BigInt64Array.of(BigInt(length)),
      cache: out.cache,
    });
    length++;
  }
  return tokens;
}

describe('best-of-N conversations', () => {
  let engine: LocalVlmEngine;
  let model: VlmModel;
  let processor: VlmProcessor;
  beforeAll(async () => {
    engine = await LocalVlmEngine.open({ packDir: TINY_VLM });
    model = await VlmModel.open(TINY_VLM);
    processor = new VlmProcessor(model.pack);
  });
  afterAll(async () => {
    await engine.close();
    await model.release();
  });

  it('prefills once, samples n candidates per batch, and continues the chosen cache exactly', async () => {
    const promptIds = (await processor.encode({ prompt, image, assistantText: prefix })).inputIds;
    const handle = await engine.open({ prompt, image, answerPrefix: prefix });
    expect(await engine.text(handle)).toBe(prefix);
    const options = { n: 4, topK: 5, temperature: 1.5, endTokenIds: [], maxTokens: 6, seed: 1 };
    const first = await engine.sampleCandidates(handle, options);
    expect(first).toHaveLength(4);
    expect(first.every((c) => c.tokens.length === 6)).toBe(true);
    await engine.accept(handle, 2);

    // Greedy candidates (top-k 1) after the accepted sentence equal an independent decode of the same ids.
    const next = await engine.sampleCandidates(handle, { ...options, n: 3, topK: 1, maxTokens: 5 });
    const expected = await greedyFromIds(model, processor, [...promptIds, ...first[2].tokens], 5);
    for (const c of next) expect(c.tokens).toEqual(expected);
    await engine.accept(handle, 0);

    const stats = await engine.stats(handle);
    expect(stats.prefillTokens).toBe(promptIds.length);
    expect(stats.maxBatch).toBe(4);
    // Each round: one step per sampled token after the first (the last one is fed so the cache is complete).
    expect(stats.decodeSteps).toBe(6 + 5);
    expect(await engine.text(handle)).toBe(prefix + processor.tokenizer.decode([...first[2].tokens, ...expected]));
    await engine.release(handle);
    await expect(engine.text(handle)).rejects.toThrow(/no open conversation/);
  });

  it('ends a candidate at an end token and keeps rows of different lengths apart', async () => {
    const handle = await engine.open({ prompt, image, answerPrefix: prefix });
    const probe = await engine.sampleCandidates(handle, { n: 3, topK: 5, temperature: 1.5, endTokenIds: [], maxTokens: 8, seed: 5 });
    const end = probe[0].tokens[2];
    await engine.release(handle);

    const h2 = await engine.open({ prompt, image, answerPrefix: prefix });
    const cands = await engine.sampleCandidates(h2, { n: 3, topK: 5, temperature: 1.5, endTokenIds: [end], maxTokens: 8, seed: 5 });
    expect(cands[0].tokens).toEqual(probe[0].tokens.slice(0, 3));
    for (const c of cands) expect(c.tokens.length === 8 || c.tokens.at(-1) === end).toBe(true);
    // Accept the shortest row: its cache must be cut to its own length, not the batch's.
    const shortest = cands.reduce((best, c, i) => (c.tokens.length < cands[best].tokens.length ? i : best), 0);
    await engine.accept(h2, shortest);
    const promptIds = (await processor.encode({ prompt, image, assistantText: prefix })).inputIds;
    const next = await engine.sampleCandidates(h2, { n: 2, topK: 1, temperature: 1, endTokenIds: [], maxTokens: 4, seed: 0 });
    expect(next[0].tokens).toEqual(await greedyFromIds(model, processor, [...promptIds, ...cands[shortest].tokens], 4));
    await engine.release(h2);
  });

  it('candidate rows of several conversations share decode steps and sample what they sample alone', async () => {
    const options = (seed: number) => ({ n: 3, topK: 5, temperature: 1.5, endTokenIds: [], maxTokens: 6, seed });
    const alone: string[][] = [];
    for (const seed of [1]) {
      const h = await engine.open({ prompt, image, answerPrefix: prefix });
      alone.push((await engine.sampleCandidates(h, options(seed))).map((c) => c.text));
      await engine.release(h);
    }
    const handles = [await engine.open({ prompt, image, answerPrefix: prefix }), await engine.open({ prompt: 'Is the guard closed?', answerPrefix: prefix })];
    const h0Alone = alone[0];
    // The second conversation (text-only, another prompt) runs beside the first: its rows join the same batch.
    const [together] = await Promise.all([engine.sampleCandidates(handles[0], options(1)), engine.sampleCandidates(handles[1], options(2))]);
    expect(together.map((c) => c.text)).toEqual(h0Alone);
    expect((await engine.stats(handles[0])).maxBatch).toBe(6);
    for (const h of handles) await engine.release(h);
  });
});
