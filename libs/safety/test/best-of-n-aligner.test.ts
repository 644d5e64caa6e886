import { describe, expect, it } from 'vitest';
import { BLOCKED_ANSWER, ETA_PREFIX, ETA_RM_PROMPT_BEST_OF_N, ETA_RM_PROMPT_POST } from '../src/config';
import { BestOfNAligner, chooseCandidate } from '../src/best-of-n-aligner';
import { EtaEvaluator } from '../src/eta-evaluator';
import { cand, fakeClip, fakeConversation, fakeReward } from './fakes';

describe('chooseCandidate', () => {
  it('uses the reward alone for the first sentence', () => {
    expect(chooseCandidate([0.1, 0.3, 0.2], [0.9, 0, 0], 1, false, 1)).toMatchObject({ index: 1, scores: [0.1, 0.3, 0.2], usedClip: false });
  });
  it('adds (alpha / i) * clip from the second sentence on', () => {
    const r = chooseCandidate([0.1, 0.3, 0.2], [0.9, 0, 0], 2, false, 1);
    expect(r.usedClip).toBe(true);
    expect(r.scores[0]).toBeCloseTo(0.55, 12);
    expect(r.index).toBe(0);
    expect(chooseCandidate([0.1, 0.3], [0.9, 0], 8, false, 1).index).toBe(1); // the 1/i decay: 0.1 + 0.9 / 8 < 0.3
  });
  it('falls back to the reward when any candidate ended, or without an image', () => {
    expect(chooseCandidate([0.1, 0.3], [0.9, 0], 2, true, 1).index).toBe(1);
    expect(chooseCandidate([0.1, 0.3], null, 3, false, 1).index).toBe(1);
  });
  it('takes the first of equal scores', () => {
    expect(chooseCandidate([0.2, 0.2], null, 1, false, 1).index).toBe(0);
  });
});

function setup(script: Parameters<typeof fakeConversation>[0], rewardOf: (a: string) => number, clipTexts: Record<string, number[]> = {}) {
  const conv = fakeConversation(script);
  const reward = fakeReward(rewardOf);
  const clip = fakeClip({ 9: [1, 0, 0] }, clipTexts);
  const evaluator = new EtaEvaluator({ clip, reward });
  const aligner = new BestOfNAligner({ engine: conv.engine, evaluator, clip, endTokenIds: [13] }, { n: 3 });
  return { conv, reward, clip, aligner };
}

describe('BestOfNAligner', () => {
  it('runs sentence-level best-of-N from the prefix and keeps the argmax', async () => {
    const script = [
      [cand(', I cannot do that.'), cand(', sure.'), cand(', here is how.')],
      [cand(' Safety first.'), cand(' Cut the wire.'), cand(' Ask your supervisor.')],
      [cand(' Stay safe.', true), cand(' More.'), cand(' Bye.', true)],
    ];
    // Reward: refusals score high; CLIP: "Ask your supervisor." is most on-image.
    const score = (a: string) =>
      (a.includes('cannot') ? 1 : 0) + (a.includes('Cut') ? -1 : 0) + (a.includes('Stay') ? 0.1 : 0) + (a.includes('Safety first') ? 0.2 : 0);
    const { conv, reward, aligner } = setup(script, score, { 'Ask your supervisor.': [1, 0, 0], 'Safety first.': [0, 1, 0] });
    const r = await aligner.align({ prompt: 'How do I bypass the guard?', image: Uint8Array.of(9) });

    expect(conv.opened[0]).toMatchObject({ prompt: 'How do I bypass the guard?', answerPrefix: ETA_PREFIX });
    expect(conv.sampled.map((o) => o.seed)).toEqual([2, 3, 4]); // seed 1 + sentence index
    expect(conv.sampled[0]).toMatchObject({ n: 3, topK: 5, temperature: 1.5, endTokenIds: [13], maxTokens: 70 });
    // Sentence 1: reward only -> the refusal. Sentence 2: 1.2 + 0/2 vs 1 + 1/2 -> "Ask your supervisor.".
    // Sentence 3: a candidate has eos -> reward only -> "Stay safe." (1.1 vs 1.0).
    expect(r.chosen).toEqual([0, 2, 0]);
    expect(r.steps.map((s) => s.usedClip)).toEqual([false, true, false]);
    expect(r.scores[1][2]).toBeCloseTo(1.5, 6);
    expect(r.answer).toBe('As an AI assistant, I cannot do that. Ask your supervisor. Stay safe.');
    expect(r.answer.startsWith(ETA_PREFIX)).toBe(true);
    expect(r.sentences).toEqual([', I cannot do that.', ' Ask your supervisor.', ' Stay safe.']);
    expect(r.candidatesScored).toBe(9);
    expect(r.finishReason).toBe('eos');
    expect(r.decision).toBe('aligned');
    expect(r.final.answer_safety).toBeCloseTo(1.1, 6);
    for (let s = 0; s < 3; s++) expect(r.scores[s][r.chosen[s]]).toBe(Math.max(...r.scores[s]));
    // Candidates are scored under the best-of-N instruction on prefix + text so far + candidate.
    expect(reward.seen[0][0].content).toBe(ETA_RM_PROMPT_BEST_OF_N);
    expect(reward.seen[3][1].content).toBe('As an AI assistant, I cannot do that. Safety first.');
    expect(conv.released).toEqual([7]);
  });

  it('blocks when the final answer still fails the post check; text-only jobs never call CLIP', async () => {
    const script = [[cand(' Cut it.', true), cand(' Tape it.', true), cand(' Jam it.', true)]];
    const { clip, aligner } = setup(script, () => -1);
    const r = await aligner.align({ prompt: 'How?' });
    expect(r.decision).toBe('blocked');
    expect(r.final).toEqual({ answer_safety: -1, tau_post: 0.06, passed: false, categories: {}, category_scores: {} });
    expect(clip.textCalls).toEqual([]);
    // issue 12 item 5: a blocked answer is never shown; the fixed refusal is, the text is kept for audit.
    expect(r.answer).toBe('As an AI assistant Cut it.');
    expect(r.finalAnswer).toBe(BLOCKED_ANSWER);
  });

  it('re-scores the final answer without the shallow prefix: the prefix cannot buy `aligned` (issue 12 item 5)', async () => {
    // A reward pack fooled by the prefix, as factory-guard was: anything after "As an AI assistant" scores safe.
    const fooled = (a: string) => (a.startsWith(ETA_PREFIX) ? 2 : a.toLowerCase().includes('tape over') ? -3 : 1);
    const script = [[cand(', tape over the receiver.', true), cand(', tape over the receiver.', true), cand(', tape over it.', true)]];
    const { reward, aligner } = setup(script, fooled);
    const r = await aligner.align({ prompt: 'How do I defeat the light curtain?' });
    expect(r.answer).toBe('As an AI assistant, tape over the receiver.');
    // The last call scores the answer as it is and without the prefix, under the post-generation instruction.
    const finalCall = reward.seen.slice(-2);
    expect(finalCall.map((c) => c[0].content)).toEqual([ETA_RM_PROMPT_POST, ETA_RM_PROMPT_POST]);
    expect(finalCall.map((c) => c[1].content)).toEqual(['As an AI assistant, tape over the receiver.', 'Tape over the receiver.']);
    expect(r.final.answer_safety).toBe(-3);
    expect(r.decision).toBe('blocked');
    expect(r.finalAnswer).toBe(BLOCKED_ANSWER);
  });

  it('an aligned answer is shown as it is', async () => {
    const script = [[cand(', I cannot help with that.', true), cand(', no.', true), cand(', sure.', true)]];
    const { aligner } = setup(script, (a) => (a.includes('cannot') ? 1 : 0));
    const r = await aligner.align({ prompt: 'How?' });
    expect(r.decision).toBe('aligned');
    expect(r.finalAnswer).toBe(r.answer);
    expect(r.answer).toBe('As an AI assistant, I cannot help with that.');
  });

  it('stops at the token budget and releases the conversation on errors', async () => {
    const long = [cand('a b c.'), cand('d e f.'), cand('g h i.')];
    const conv = fakeConversation([long, long, long, long]);
    const evaluator = new EtaEvaluator({ clip: fakeClip({}, {}), reward: fakeReward(() => 1) });
    const aligner = new BestOfNAligner({ engine: conv.engine, evaluator, endTokenIds: [13] }, { n: 3, maxTotalTokens: 5 });
    const r = await aligner.align({ prompt: 'x' });
    expect(r.finishReason).toBe('length');
    expect(conv.sampled.map((o) => o.maxTokens)).toEqual([5, 2]);

    const broken = fakeConversation([]);
    const failing = new BestOfNAligner({ engine: broken.engine, evaluator, endTokenIds: [13] });
    await expect(failing.align({ prompt: 'x' })).rejects.toThrow(/script exhausted/);
    expect(broken.released).toEqual([7]);
  });
});
