/**
 * The runtime against the independent PyTorch reference (tools/modelzoo): preprocessing, prompt ids,
 * prefill logits, taps and greedy tokens, with no revision and with layer- and head-level revision
 * applied through the revisable decoder (the reference applies it with forward hooks).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalVlmEngine, VlmModel, VlmProcessor, loadVlmPack } from '@libs/vlm';
import type { GenerationRequest, RevisionFeed } from '@libs/vlm';
import { TINY_VLM, goldenImage, goldenPrompt, loadVlmGolden, maxAbsDiff } from './golden';

const golden = loadVlmGolden();
const image = goldenImage();
const prompt = goldenPrompt(golden.messages);
const textPrompt = goldenPrompt(golden.text_only.messages);

function feedFor(name: keyof typeof golden.cases): RevisionFeed | undefined {
  const c = golden.cases[name];
  if (!c.level) return undefined;
  const data = Float32Array.from(golden.revision[c.level].data);
  return c.level === 'layer' ? { layer: data, positions: c.positions! } : { head: data, positions: c.positions! };
}

describe('processor', () => {
  const processor = new VlmProcessor(loadVlmPack(TINY_VLM));

  it('renders the chat template and expands the image tokens as the reference does', async () => {
    expect(processor.templatedPrompt({ prompt, image })).toBe(golden.prompt_text);
    const encoded = await processor.encode({ prompt, image });
    expect(encoded.inputIds).toEqual(golden.input_ids);
    expect((await processor.encode({ prompt: textPrompt })).inputIds).toEqual(golden.text_only.input_ids);
  });

  it('computes the reference pixel values', async () => {
    const { pixels } = await processor.encode({ prompt, image });
    expect(pixels!.frames).toHaveLength(1);
    expect(maxAbsDiff(pixels!.frames[0], golden.pixel_values.data)).toBeLessThan(1e-6);
  });
});

describe('decoder against the PyTorch reference', () => {
  let engine: LocalVlmEngine;
  beforeAll(async () => {
    engine = await LocalVlmEngine.open({ packDir: TINY_VLM });
  });
  afterAll(() => engine.close());

  const cases = Object.keys(golden.cases) as (keyof typeof golden.cases)[];
  it.each(cases)('%s: prefill logits within 1e-4, taps within 1e-4, greedy tokens exact', async (name) => {
    const expected = golden.cases[name];
    const [result] = await engine.generate([{ prompt, image, revision: feedFor(name), maxNewTokens: golden.max_new_tokens, ignoreEos: true, taps: true }]);
    expect(result.tokens).toEqual(expected.tokens);
    const prefill = result.taps![0];
    expect(maxAbsDiff(prefill.layer, expected.tap_layer.flat())).toBeLessThan(1e-4);
    expect(maxAbsDiff(prefill.head, expected.tap_head.flat())).toBeLessThan(1e-4);
  });

  it('prefill logits match for every case', async () => {
    const model = await VlmModel.open(TINY_VLM);
    const processor = new VlmProcessor(model.pack);
    try {
      for (const name of cases) {
        const logits = await lastLogits(model, processor, prompt, image, feedFor(name));
        expect(maxAbsDiff(logits, golden.cases[name].prefill_last_logits), name).toBeLessThan(1e-4);
      }
    } finally {
      await model.release();
    }
  });

  it('a left-padded batch (image + text-only rows, different revisions) gives each row its reference tokens', async () => {
    const requests: GenerationRequest[] = [
      { prompt: textPrompt, maxNewTokens: golden.max_new_tokens, ignoreEos: true },
      { prompt, image, revision: feedFor('head_last'), maxNewTokens: golden.max_new_tokens, ignoreEos: true },
      { prompt, image, maxNewTokens: golden.max_new_tokens, ignoreEos: true },
      { prompt, image, revision: feedFor('layer_all'), maxNewTokens: golden.max_new_tokens, ignoreEos: true },
    ];
    const results = await engine.generate(requests);
    expect(results.map((r) => r.tokens)).toEqual([
      golden.text_only.tokens,
      golden.cases.head_last.tokens,
      golden.cases.none.tokens,
      golden.cases.layer_all.tokens,
    ]);
    expect(results[0].text).toBe(golden.text_only.text);
  });
});

/** Last-position logits of one prefill, read straight from the model (no sampling in between). */
async function lastLogits(model: VlmModel, processor: VlmProcessor, p: string, img: Uint8Array | undefined, feed?: RevisionFeed) {
  const { GenerationRuntime } = await import('../src/generation');
  const generator = new GenerationRuntime(model, processor);
  const seen: Float32Array[] = [];
  // A one-token greedy run exposes the prefill logits through the sampler's input.
  const original = model.forward.bind(model);
  model.forward = async (input) => {
    const out = await original(input);
    seen.push(out.logits.slice(out.logits.length - model.pack.text.vocabSize));
    return out;
  };
  try {
    await generator.generate([{ prompt: p, image: img, revision: feed, maxNewTokens: 1, ignoreEos: true }]);
  } finally {
    model.forward = original;
  }
  return seen[0];
}
