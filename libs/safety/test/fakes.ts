import type { AlignmentStats, Candidate, CandidateOptions, ChatMessage, ClipEmbedder, ConversationClassifier, ConversationEngine } from '@libs/vlm';

/** CLIP whose embeddings are looked up by image's first byte / by text. */
export function fakeClip(images: Record<number, number[]>, texts: Record<string, number[]>, fallback = [0, 0, 1]): ClipEmbedder & { textCalls: string[][] } {
  const textCalls: string[][] = [];
  return {
    textCalls,
    async embedImages(list) {
      return list.map((b) => Float32Array.from(images[b[0]] ?? fallback));
    },
    async embedTexts(list) {
      textCalls.push(list);
      return list.map((t) => Float32Array.from(texts[t] ?? fallback));
    },
    async close() {},
  };
}

/** Reward = a function of the assistant turn; records every conversation it saw. */
export function fakeReward(score: (answer: string) => number): ConversationClassifier & { seen: ChatMessage[][] } {
  const seen: ChatMessage[][] = [];
  return {
    labels: ['reward'],
    seen,
    async classify(conversations) {
      seen.push(...conversations);
      return conversations.map((c) => Float32Array.from([score(c[c.length - 1].content)]));
    },
    async close() {},
  };
}

/**
 * A scripted conversation engine: sentence i offers script[i-1] as candidates. It mimics the real engine's
 * bookkeeping (prefix prefilled once, N rows per decode step).
 */
export function fakeConversation(script: Candidate[][], promptTokens = 10) {
  const opened: { prompt: string; image?: Uint8Array; answerPrefix?: string }[] = [];
  const sampled: CandidateOptions[] = [];
  const released: number[] = [];
  let text = '';
  let step = 0;
  let stats: AlignmentStats = { prefillTokens: 0, decodeSteps: 0, maxBatch: 0 };
  const engine: ConversationEngine = {
    async open(r) {
      opened.push(r);
      text = r.answerPrefix ?? '';
      step = 0;
      stats = { prefillTokens: promptTokens + (r.answerPrefix ? r.answerPrefix.split(' ').length : 0), decodeSteps: 0, maxBatch: 1 };
      return 7;
    },
    async sampleCandidates(_h, options) {
      sampled.push(options);
      const cands = script[step++];
      if (!cands) throw new Error('script exhausted');
      stats.decodeSteps += Math.max(...cands.map((c) => c.tokens.length));
      stats.maxBatch = Math.max(stats.maxBatch, options.n);
      return cands;
    },
    async accept(_h, i) {
      text += script[step - 1][i].text;
    },
    async text() {
      return text;
    },
    async stats() {
      return stats;
    },
    async release(h) {
      released.push(h);
    },
  };
  return { engine, opened, sampled, released };
}

export const cand = (text: string, eos = false): Candidate => ({ text, tokens: text.split(' ').map((_, i) => 100 + i), eos });
