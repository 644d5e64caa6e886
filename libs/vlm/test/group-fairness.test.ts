/**
 * A full batch shared between groups (tenants): rows of a group that waits preempt rows of the group that has held
 * the batch, which rejoin later with their own cache, and every row still gets the tokens it gets alone and the
 * PyTorch reference's. Rows of one group keep first come, first served.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalVlmEngine, type GenerationRequest, type RevisionFeed } from '@libs/vlm';
import { TINY_VLM, goldenImage, goldenPrompt, loadVlmGolden } from './golden';

const golden = loadVlmGolden();
const prompt = goldenPrompt(golden.messages);
const textPrompt = goldenPrompt(golden.text_only.messages);
const image = goldenImage();
const headLast = golden.cases.head_last;
const headFeed: RevisionFeed = { head: Float32Array.from(golden.revision.head.data), positions: headLast.positions! };

/** Resolves once `count` tokens streamed: the rows are mid-decode then, and their group has used the batch. */
function afterTokens(count: number): { onToken: () => void; reached: Promise<void> } {
  let seen = 0;
  let release!: () => void;
  const reached = new Promise<void>((r) => (release = r));
  return { onToken: () => void (++seen === count && release()), reached };
}

describe('groups sharing a full batch (tiny pack, two rows at most)', () => {
  let engine: LocalVlmEngine;
  beforeAll(async () => {
    engine = await LocalVlmEngine.open({ packDir: TINY_VLM, scheduler: { maxBatchSize: 2 } });
  });
  afterAll(() => engine.close());

  // Long rows, so the newcomer is submitted (its image preprocessed) while they still have most of their tokens to go,
  // however loaded the machine; their first golden.max_new_tokens tokens are the PyTorch reference's.
  const LONG = 160;
  const revised: GenerationRequest = { prompt, image, revision: headFeed, maxNewTokens: LONG, ignoreEos: true };
  const sampled: GenerationRequest = { prompt: textPrompt, sampling: { temperature: 1.3, topK: 30, topP: 0.9, seed: 7 }, maxNewTokens: LONG, ignoreEos: true };
  let alone: { revised: number[]; sampled: number[] };
  beforeAll(async () => {
    const [r] = await engine.generate([revised]);
    const [x] = await engine.generate([sampled]);
    alone = { revised: r.tokens, sampled: x.tokens };
    expect(r.tokens.slice(0, golden.max_new_tokens)).toEqual(headLast.tokens);
  });

  /** Group a's two long rows, once they are mid-decode (the batch is full); `finished` gets 'a' when they end. */
  async function busyGroupA() {
    const finished: string[] = [];
    const mid = afterTokens(8);
    const busy = engine.generate(
      [
        { ...revised, group: 'a' },
        { ...sampled, group: 'a' },
      ],
      mid.onToken,
    );
    void busy.then(() => finished.push('a'));
    await mid.reached;
    return { busy, finished };
  }

  it("a waiting group's row preempts the busy group's rows and finishes first; the preempted rows resume with their reference tokens", async () => {
    const before = engine.schedulerStats();
    const { busy, finished } = await busyGroupA();
    const newcomer = engine.generate([{ prompt, image, maxNewTokens: 3, ignoreEos: true, group: 'b' }]).then((r) => (finished.push('b'), r));
    const [[a1, a2], [b]] = await Promise.all([busy, newcomer]);

    expect(finished).toEqual(['b', 'a']);
    expect(engine.schedulerStats().preemptions - before.preemptions).toBeGreaterThanOrEqual(1);
    expect(b.tokens).toEqual(golden.cases.none.tokens.slice(0, 3));
    expect(a1.tokens).toEqual(alone.revised);
    expect(a2.tokens).toEqual(alone.sampled);
  });

  it('rows of the same group wait for a free slot (first come, first served); nothing is preempted', async () => {
    const before = engine.schedulerStats();
    const { busy, finished } = await busyGroupA();
    const late = engine.generate([{ prompt, image, maxNewTokens: 3, ignoreEos: true, group: 'a' }]).then((r) => (finished.push('late'), r));
    const [[a1], [late1]] = await Promise.all([busy, late]);
    expect(finished).toEqual(['a', 'late']);
    expect(engine.schedulerStats().preemptions).toBe(before.preemptions);
    expect(a1.tokens).toEqual(alone.revised);
    expect(late1.tokens).toEqual(golden.cases.none.tokens.slice(0, 3));
  });

  it('a best-of-N conversation carries its group: its candidate rows preempt a busy group too', async () => {
    const before = engine.schedulerStats();
    const { busy, finished } = await busyGroupA();
    const handle = await engine.open({ prompt, image, group: 'c' });
    const candidates = await engine.sampleCandidates(handle, { n: 2, topK: 20, temperature: 1, endTokenIds: [], maxTokens: 2, seed: 3 });
    finished.push('c');
    await engine.release(handle);
    const [a1] = await busy;
    expect(finished).toEqual(['c', 'a']);
    expect(candidates.map((c) => c.tokens.length)).toEqual([2, 2]);
    expect(engine.schedulerStats().preemptions - before.preemptions).toBeGreaterThanOrEqual(1);
    expect(a1.tokens).toEqual(alone.revised);
  });
});

describe("the hold: a lighter group's rows keep a heavier group's waiting rows out (tiny pack, four rows at most)", () => {
  const LONG = 160;
  // Usage is row-steps with no decay to speak of, so who is lighter does not depend on the machine's speed.
  const scheduler = { maxBatchSize: 4, minBatchSize: 1, groupHalfLifeSteps: 1e9 };
  // a's rows outlast b's, so a stays the heavier group (more than twice b's use) until b's row ends.
  const a: GenerationRequest = { prompt: textPrompt, maxNewTokens: LONG + 40, ignoreEos: true, group: 'a' };
  const b: GenerationRequest = { prompt, image, maxNewTokens: LONG, ignoreEos: true, group: 'b' };
  const late: GenerationRequest = { prompt: textPrompt, maxNewTokens: 3, ignoreEos: true, group: 'a' };

  /**
   * Group a's two long rows run; b's long row joins (a slot is free: nothing is preempted); once b has a token, a's
   * third row is submitted into the last free slot. Returns when b's row ended, when the late row's first token came,
   * and the late row's tokens against its run alone.
   */
  async function lateRowBesideNewcomer(engine: LocalVlmEngine) {
    const [alone] = await engine.generate([late]);
    const mid = afterTokens(16);
    const busy = engine.generate([a, a], mid.onToken);
    await mid.reached;
    const bStarted = afterTokens(1);
    const bSent = performance.now();
    const newcomer = engine.generate([b], bStarted.onToken).then((r) => ({ r, at: performance.now() }));
    await bStarted.reached;
    let lateFirst = 0;
    const lateRow = engine.generate([late], () => void (lateFirst ||= performance.now()));
    const [[lateResult], { at: bEnded }] = await Promise.all([lateRow, newcomer, busy]);
    expect(lateResult.tokens).toEqual(alone.tokens);
    return { bSent, bEnded, lateFirst };
  }

  it('while the newcomer runs, the backlog group joins nothing, not even into a free slot', async () => {
    const engine = await LocalVlmEngine.open({ packDir: TINY_VLM, scheduler: { ...scheduler, groupHoldMs: 60_000 } });
    try {
      const { bEnded, lateFirst } = await lateRowBesideNewcomer(engine);
      expect(lateFirst).toBeGreaterThanOrEqual(bEnded);
      expect(engine.schedulerStats().holds).toBe(1);
      expect(engine.schedulerStats().preemptions).toBe(0);
    } finally {
      await engine.close();
    }
  });

  it('the hold ends after groupHoldMs even while the newcomer still runs; 0 holds nothing', async () => {
    for (const groupHoldMs of [40, 0]) {
      const engine = await LocalVlmEngine.open({ packDir: TINY_VLM, scheduler: { ...scheduler, groupHoldMs } });
      try {
        const { bSent, bEnded, lateFirst } = await lateRowBesideNewcomer(engine);
        expect(lateFirst, `groupHoldMs ${groupHoldMs}`).toBeLessThan(bEnded);
        expect(lateFirst - bSent).toBeGreaterThanOrEqual(groupHoldMs);
        expect(engine.schedulerStats().holds).toBe(groupHoldMs ? 1 : 0);
      } finally {
        await engine.close();
      }
    }
  });

  it('two groups that both run rows, one with twice the other, do not hold each other: a free slot is taken at once', async () => {
    const engine = await LocalVlmEngine.open({ packDir: TINY_VLM, scheduler: { ...scheduler, groupHoldMs: 60_000 } });
    try {
      const mid = afterTokens(24);
      const busy = engine.generate([a, a, { ...a, group: 'c' }], mid.onToken).then((r) => ({ r, at: performance.now() }));
      await mid.reached;
      let lateFirst = 0;
      const [[lateResult], { at: busyEnded }] = await Promise.all([engine.generate([late], () => void (lateFirst ||= performance.now())), busy]);
      expect(lateResult.tokens).toHaveLength(3);
      expect(lateFirst).toBeLessThan(busyEnded);
      expect(engine.schedulerStats().holds).toBe(0);
    } finally {
      await engine.close();
    }
  });
});
