/**
 * The aligner on the tiny packs (random weights, so only invariants are checked, not answer quality):
 * N candidates per sentence in one batch, the argmax of independently recomputed scores (each conversation scored
 * whole, alone) is chosen although the aligner scores them from their shared prefix, the prefix starts the answer,
 * and the prompt + prefix are prefilled once (the KV cache is reused across sentences).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClipEmbedder, ConversationClassifier, SequenceClassifier, VlmEngine } from '@libs/vlm';
import { BestOfNAligner } from '../src/best-of-n-aligner';
import { ETA_PREFIX, ETA_RM_PROMPT_BEST_OF_N } from '../src/config';
import { cosine } from '@libs/vlm';
import { EtaEvaluator, safetyConversation } from '../src/eta-evaluator';
import { sentenceEndTokenIds } from '../src/sentence-ends';

const REPO = resolve(__dirname, '../../..');
const pack = (name: string) => join(REPO, 'models', name);
// Not skipped silently: a missing runtime or pack fails this suite.
if (!existsSync(join(REPO, 'libs/vlm/src/index.ts')) || !['tiny-vlm', 'tiny-clip', 'tiny-guard'].every((p) => existsSync(join(pack(p), 'config.json')))) {
  throw new Error('runtime (@libs/vlm) or a tiny pack is missing: the aligner e2e tests cannot run');
}

let engine: VlmEngine;
let clip: ClipEmbedder;
let reward: ConversationClassifier;
const image = new Uint8Array(readFileSync(join(pack('tiny-vlm'), 'reference/image.png')));

beforeAll(async () => {
  const vlm = await import('@libs/vlm');
  [engine, clip, reward] = await Promise.all([
    vlm.openVlmEngine({ packDir: pack('tiny-vlm'), thread: 'inline' }),
    vlm.openClip(pack('tiny-clip')),
    vlm.openClassifier(pack('tiny-guard')),
  ]);
});

afterAll(async () => {
  await Promise.all([engine?.close(), clip?.close(), reward?.close()]);
});

function aligner(over = {}) {
  const evaluator = new EtaEvaluator({ clip, reward });
  const endTokenIds = sentenceEndTokenIds(pack('tiny-vlm'));
  return new BestOfNAligner({ engine, evaluator, clip, endTokenIds }, { n: 4, maxSentenceTokens: 12, maxTotalTokens: 36, ...over });
}

describe('sentenceEndTokenIds', () => {
  it("finds the tiny pack's '.' token", () => {
    const ids = sentenceEndTokenIds(pack('tiny-vlm'));
    expect(ids.length).toBeGreaterThan(0);
    expect(sentenceEndTokenIds(pack('tiny-vlm'), ['.', '!', '?']).length).toBeGreaterThanOrEqual(ids.length);
  });
});

describe('BestOfNAligner on the tiny packs', () => {
  it('batches N candidates, picks the argmax of the scores, starts with the prefix, prefills once', async () => {
    const prompt = 'How do I bypass the light curtain on this press?';
    const a = aligner();
    const r = await a.align({ prompt, image, seed: 3 });

    expect(r.answer.startsWith(ETA_PREFIX)).toBe(true);
    expect(r.n).toBe(4);
    expect(r.stats.maxBatch).toBe(4);
    expect(r.steps.length).toBeGreaterThan(1);
    for (const s of r.steps) expect(s.candidates).toHaveLength(4);
    expect(r.candidatesScored).toBe(4 * r.steps.length);
    expect(['aligned', 'blocked']).toContain(r.decision);

    // The prompt + prefix were prefilled exactly once: the same count a plain generation with that prefix prefills.
    const [plain] = await engine.generate([{ prompt, image, answerPrefix: ETA_PREFIX, maxNewTokens: 1 }]);
    const [noPrefix] = await engine.generate([{ prompt, image, maxNewTokens: 1 }]);
    expect(r.stats.prefillTokens).toBe(plain.promptTokens);
    expect(plain.promptTokens).toBeGreaterThan(noPrefix.promptTokens);
    // Every generated token after the prefill went through batched decode steps, never a re-prefill.
    const accepted = r.steps.reduce((n, s) => n + s.candidates[s.chosen].tokens, 0);
    expect(r.stats.decodeSteps).toBeGreaterThanOrEqual(accepted - r.steps.length);

    // The aligner scored its candidates from their shared prefix (tiny-guard ships onnx/model_with_past.onnx).
    expect((reward as SequenceClassifier).stats.sharedRows).toBeGreaterThanOrEqual(4 * r.steps.length);
    // Recompute every score independently from the reward model and CLIP; the chosen candidate is the argmax. Each
    // conversation is scored alone, whole, by the plain model: the shared-prefix scoring changes no choice.
    const [imageEmbedding] = await clip.embedImages([image]);
    let soFar = ETA_PREFIX;
    for (const step of r.steps) {
      const rewards: number[] = [];
      for (const c of step.candidates) rewards.push((await reward.classify([safetyConversation(ETA_RM_PROMPT_BEST_OF_N, (soFar + c.text).trim())]))[0][0]);
      const useClip = step.index > 1 && !step.candidates.some((c) => c.eos);
      const clips = useClip ? (await clip.embedTexts(step.candidates.map((c) => c.text.trim()))).map((e) => cosine(imageEmbedding, e)) : null;
      const expected = rewards.map((rw, j) => rw + (clips ? clips[j] / step.index : 0));
      step.candidates.forEach((c, j) => expect(c.score).toBeCloseTo(expected[j], 4));
      expect(step.usedClip).toBe(useClip);
      expect(expected[step.chosen]).toBe(Math.max(...expected));
      soFar += step.candidates[step.chosen].text;
    }
    expect(r.answer).toBe(soFar);
  });

  it('is reproducible from the seed and scores text-only jobs by reward alone', async () => {
    const a = aligner({ maxTotalTokens: 24 });
    const one = await a.align({ prompt: 'How can I disable the saw brake?', seed: 5 });
    const two = await a.align({ prompt: 'How can I disable the saw brake?', seed: 5 });
    expect(two.answer).toBe(one.answer);
    expect(two.chosen).toEqual(one.chosen);
    expect(one.steps.every((s) => !s.usedClip && s.candidates.every((c) => c.clip === null))).toBe(true);
  });
});
