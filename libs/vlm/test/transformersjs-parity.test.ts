/**
 * Proof of the pack layout: @huggingface/transformers loads the tiny pack with its own Idefics3 classes
 * (local files only) and greedy-decodes the same tokens as our runtime.
 */
import { dirname } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalVlmEngine } from '@libs/vlm';
import { TINY_VLM, goldenImage, goldenPrompt, loadVlmGolden } from './golden';

const golden = loadVlmGolden();

describe('transformers.js loads the tiny pack', () => {
  let engine: LocalVlmEngine;
  beforeAll(async () => {
    engine = await LocalVlmEngine.open({ packDir: TINY_VLM, revisable: false });
  });
  afterAll(() => engine.close());

  it('and greedy-decodes the same tokens as our runtime', async () => {
    const hf = await import('@huggingface/transformers');
    hf.env.allowRemoteModels = false;
    hf.env.localModelPath = dirname(TINY_VLM) + '/';
    const processor = await hf.AutoProcessor.from_pretrained('tiny-vlm', { local_files_only: true });
    const model = await hf.AutoModelForVision2Seq.from_pretrained('tiny-vlm', { local_files_only: true, dtype: 'fp32', device: 'cpu' });
    const image = await hf.RawImage.fromBlob(new Blob([goldenImage()]));
    const text = processor.apply_chat_template(golden.messages, { add_generation_prompt: true });
    expect(text).toBe(golden.prompt_text);
    const inputs = await processor(text, [image]);
    const n = golden.max_new_tokens;
    const out = (await model.generate({ ...inputs, max_new_tokens: n, min_new_tokens: n, do_sample: false })) as { tolist(): bigint[][] };
    const hfTokens = out.tolist()[0].slice(-n).map(Number);

    const [ours] = await engine.generate([{ prompt: goldenPrompt(golden.messages), image: goldenImage(), maxNewTokens: n, ignoreEos: true }]);
    expect(ours.tokens).toEqual(hfTokens);
    expect(hfTokens).toEqual(golden.cases.none.tokens);
    await model.dispose();
  });
});
