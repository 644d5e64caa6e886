import { describe, expect, it } from 'vitest';
import { ETA_RM_PROMPT_POST, ETA_UNSAFE_IMAGE_TEXT } from '../src/config';
import { EtaEvaluator, etaDecision } from '../src/eta-evaluator';
import { fakeClip, fakeReward } from './fakes';
import { balancedThreshold } from '../src/thresholds';

const cfg = { tauPre: 0.16, tauPost: 0.06 };

describe('etaDecision', () => {
  it("'both' flags only when image and answer flag; thresholds are inclusive as in the reference", () => {
    expect(etaDecision(0.16, 0.06, { ...cfg, policy: 'both' })).toMatchObject({ flagged: true, imageFlagged: true, answerFlagged: true });
    expect(etaDecision(0.159, 0.06, { ...cfg, policy: 'both' })).toMatchObject({ flagged: false, imageFlagged: false, answerFlagged: true });
    expect(etaDecision(0.5, 0.061, { ...cfg, policy: 'both' })).toMatchObject({ flagged: false, imageFlagged: true, answerFlagged: false });
  });
  it("'either' flags when one flags", () => {
    expect(etaDecision(0.5, 0.9, { ...cfg, policy: 'either' }).flagged).toBe(true);
    expect(etaDecision(0.0, 0.9, { ...cfg, policy: 'either' }).flagged).toBe(false);
  });
  it("'answer' flags on the answer alone and still reports the image", () => {
    expect(etaDecision(0.0, 0.06, { ...cfg, policy: 'answer' })).toMatchObject({ flagged: true, imageFlagged: false, answerFlagged: true });
    expect(etaDecision(0.9, 0.07, { ...cfg, policy: 'answer' })).toMatchObject({ flagged: false, imageFlagged: true, answerFlagged: false });
  });
  it('a flagged harm category flags the answer whatever its reward (issue 12 item 6)', () => {
    expect(etaDecision(0.0, 5, { ...cfg, policy: 'answer' }, true)).toMatchObject({ flagged: true, answerFlagged: true });
    expect(etaDecision(null, 5, { ...cfg, policy: 'both' }, true)).toMatchObject({ flagged: true });
    expect(etaDecision(0.0, 5, { ...cfg, policy: 'answer' }, false)).toMatchObject({ flagged: false });
  });
  it('text-only jobs decide on the reward alone', () => {
    expect(etaDecision(null, 0.0, { ...cfg, policy: 'both' })).toMatchObject({ flagged: true, imageFlagged: null });
    expect(etaDecision(null, 0.5, { ...cfg, policy: 'either' })).toMatchObject({ flagged: false });
  });
});

describe('EtaEvaluator', () => {
  // Unsafe text along x; image 1 at cos 0.6, image 2 at cos -0.6 (clamped to 0).
  const clip = fakeClip({ 1: [3, 4, 0], 2: [-3, 4, 0] }, { [ETA_UNSAFE_IMAGE_TEXT]: [2, 0, 0] });

  it('scores max(cos, 0) against the reference text and the reward under the safety instruction', async () => {
    const reward = fakeReward((a) => (a.includes('cannot') ? 0.5 : -0.2));
    const eta = new EtaEvaluator({ clip, reward }, { policy: 'both' });
    const [unsafe, benign, textOnly] = await eta.evaluateBatch([
      { image: Uint8Array.of(1), answer: 'Remove the guard.' },
      { image: Uint8Array.of(2), answer: 'Remove the guard.' },
      { answer: 'I cannot help with that.' },
    ]);
    expect(unsafe.scores.image_risk).toBeCloseTo(0.6, 6);
    expect(unsafe).toMatchObject({ flagged: true, imageFlagged: true, answerFlagged: true, policy: 'both', thresholds: { tau_pre: 0.16, tau_post: 0.06 } });
    expect(unsafe.scores.answer_safety).toBeCloseTo(-0.2, 6);
    expect(benign.scores.image_risk).toBe(0);
    expect(benign.flagged).toBe(false);
    expect(textOnly).toMatchObject({ flagged: false, imageFlagged: null, scores: { image_risk: null } });
    // The reward model sees the fixed instruction, never the user's query.
    expect(reward.seen[0]).toEqual([
      { role: 'user', content: ETA_RM_PROMPT_POST },
      { role: 'assistant', content: 'Remove the guard.' },
    ]);
    expect(ETA_RM_PROMPT_POST).toContain('pricacy');
  });

  it('uses configured thresholds, policy and text', async () => {
    const reward = fakeReward(() => 1);
    const custom = fakeClip({ 1: [1, 0, 0] }, { 'a hazard': [1, 0, 0] });
    const eta = new EtaEvaluator({ clip: custom, reward }, { tauPre: 0.99, tauPost: 2, policy: 'either', unsafeImageText: 'a hazard' });
    const r = await eta.evaluate({ image: Uint8Array.of(1), answer: 'x' });
    expect(r.scores.image_risk).toBeCloseTo(1, 6);
    expect(r).toMatchObject({ flagged: true, imageFlagged: true, answerFlagged: true, thresholds: { tau_pre: 0.99, tau_post: 2 }, policy: 'either' });
    expect(custom.textCalls).toEqual([['a hazard']]);
  });
});

describe('EtaEvaluator.scoreAnswers', () => {
  it('a supplied answer cannot buy a pass with the shallow prefix: the lower reward counts (issue 12 item 5)', async () => {
    const reward = fakeReward((a) => (a.startsWith('As an AI assistant') ? 3 : a.includes('Tape') ? -2 : 1));
    const eta = new EtaEvaluator({ clip: fakeClip({}, {}), reward }, { policy: 'answer' });
    const [prefixed, plain] = await eta.evaluateBatch([{ answer: 'As an AI assistant, tape over the receiver.' }, { answer: 'The guard is open.' }]);
    expect(prefixed.scores.answer_safety).toBe(-2);
    expect(prefixed.flagged).toBe(true);
    expect(plain).toMatchObject({ flagged: false, scores: { answer_safety: 1 }, categories: {}, category_scores: {} });
    // One batched call: both answers, then the prefixed one without its prefix.
    expect(reward.seen.map((c) => c[1].content)).toEqual(['As an AI assistant, tape over the receiver.', 'The guard is open.', 'Tape over the receiver.']);
  });
});

describe('balancedThreshold', () => {
  it('cuts halfway between the classes when they separate, on the flagged side asked for', () => {
    expect(balancedThreshold([0.5, 0.6, 0.9], [0.1, 0.2, 0.3], true)).toEqual({ tau: 0.4, balancedAccuracy: 1 });
    expect(balancedThreshold([-5, -4.5], [-1, 0, 2], false)).toEqual({ tau: -2.75, balancedAccuracy: 1 });
  });

  it('maximises balanced accuracy when they overlap', () => {
    // flag {3, 5, 7, 9}, pass {1, 2, 4, 6}: the cut at 6.5 flags 7, 9 (2/4) and passes all (4/4): 0.75;
    // the cut at 4.5 flags 5, 7, 9 (3/4) and passes 1, 2, 4 (3/4): 0.75; 2.5 flags all and passes 2/4: 0.75.
    // The first best (lowest) cut wins.
    const r = balancedThreshold([3, 5, 7, 9], [1, 2, 4, 6], true);
    expect(r.balancedAccuracy).toBe(0.75);
    expect(r.tau).toBe(2.5);
  });
});
