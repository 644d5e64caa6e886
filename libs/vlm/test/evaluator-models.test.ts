/** CLIP and reward-model runners against the PyTorch reference outputs of tools/modelzoo. */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatTokenizer, ClipImageProcessor, ClipModel, SequenceClassifier, cosine } from '@libs/vlm';
import { maxAbsDiff } from './golden';

const TINY_CLIP = resolve(__dirname, '../../../models/tiny-clip');
const TINY_GUARD = resolve(__dirname, '../../../models/tiny-guard');
const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

describe('CLIP runner', () => {
  const golden = json(join(TINY_CLIP, 'reference', 'golden.json'));
  const image = readFileSync(join(TINY_CLIP, 'reference', golden.image));
  let clip: ClipModel;
  beforeAll(async () => {
    clip = await ClipModel.open(TINY_CLIP);
  });
  afterAll(() => clip.close());

  it('preprocesses the image as the reference does', async () => {
    const pixels = await new ClipImageProcessor(json(join(TINY_CLIP, 'preprocessor_config.json'))).process(image);
    expect(maxAbsDiff(pixels, golden.pixel_values.data)).toBeLessThan(1e-5);
  });

  it('tokenizes with the pack post-processor and embeds texts and images within 1e-4', async () => {
    const tokenizer = new ChatTokenizer(json(join(TINY_CLIP, 'tokenizer.json')), json(join(TINY_CLIP, 'tokenizer_config.json')));
    for (const t of golden.texts) expect(tokenizer.encode(t.text, true)).toEqual(t.input_ids);
    const [imageEmbeds] = await clip.embedImages([image]);
    expect(maxAbsDiff(imageEmbeds, golden.image_embeds)).toBeLessThan(1e-4);
    // Padding to the longest text in one batch must not change any row.
    const textEmbeds = await clip.embedTexts(golden.texts.map((t: { text: string }) => t.text));
    golden.texts.forEach((t: { text_embeds: number[]; cosine_with_image: number }, i: number) => {
      expect(maxAbsDiff(textEmbeds[i], t.text_embeds)).toBeLessThan(1e-4);
      expect(Math.abs(cosine(imageEmbeds, textEmbeds[i]) - t.cosine_with_image)).toBeLessThan(1e-5);
    });
  });

  it('embeds a batch of sample images', async () => {
    const samples = golden.samples as { image: string; image_embeds: number[] }[];
    const dir = resolve(__dirname, '../../../samples/demo-batch');
    const embeds = await clip.embedImages(samples.map((s) => readFileSync(join(dir, s.image))));
    samples.forEach((s, i) => expect(maxAbsDiff(embeds[i], s.image_embeds)).toBeLessThan(1e-4));
  });
});

describe('reward-model runner', () => {
  const golden = json(join(TINY_GUARD, 'reference', 'golden.json'));
  let guard: SequenceClassifier;
  beforeAll(async () => {
    guard = await SequenceClassifier.open(TINY_GUARD);
  });
  afterAll(() => guard.close());

  it('formats conversations with the pack chat template and scores them within 1e-4', async () => {
    expect(guard.labels).toEqual(['reward']);
    const conversations = golden.conversations as { messages: never[]; text: string; input_ids: number[]; logits: number[] }[];
    const tokenizer = new ChatTokenizer(json(join(TINY_GUARD, 'tokenizer.json')), json(join(TINY_GUARD, 'tokenizer_config.json')));
    for (const c of conversations) {
      expect(guard.format(c.messages)).toBe(c.text);
      expect(tokenizer.encode(c.text)).toEqual(c.input_ids);
    }
    const logits = await guard.classify(conversations.map((c) => c.messages));
    conversations.forEach((c, i) => expect(maxAbsDiff(logits[i], c.logits)).toBeLessThan(1e-4));
  });
});

describe('CLIP text limit', () => {
  it('truncates texts beyond the learned positions, keeping the end token', async () => {
    const clip = await ClipModel.open(TINY_CLIP);
    try {
      const long = 'the guard of the press is open and the light is red '.repeat(20);
      const [embeds] = await clip.embedTexts([long]);
      expect(embeds.every(Number.isFinite)).toBe(true);
    } finally {
      await clip.close();
    }
  });
});
