/**
 * ETA's aligner: shallow alignment (the answer starts with an interference prefix) + deep alignment (sentence-level
 * best-of-N). Per sentence i (from 1), the engine samples N candidates as one batch from the conversation's KV cache;
 * candidate j scores
 *     reward(prefix + text so far + candidate_j) + (clipWeight / i) * cos(CLIP(image), CLIP(candidate_j))
 * and the reward alone for the first sentence, when any candidate ended with eos, and for text-only jobs
 * (reference: accept_check / accept_check_textonly). The argmax is accepted and its cache kept, until eos or the
 * token budget. The final answer is evaluated again, as it is and without the prefix (EtaEvaluator.scoreAnswers:
 * the lower reward counts, and any flagged harm category fails it): `aligned` if it passes, else `blocked`, and a
 * blocked result shows the fixed `blockedAnswer` instead of its text.
 */
import { cosine, type AlignmentStats, type Candidate, type ClipEmbedder, type ConversationEngine, type RevisionFeed } from '@libs/vlm';
import { resolveAlignerConfig, type AlignerConfig } from './config';
import type { AnswerCategories, EtaEvaluator } from './eta-evaluator';

export interface AlignRequest {
  prompt: string;
  image?: Uint8Array;
  /** The revision the job was generated with, so the aligned answer comes from the same model state. */
  revision?: RevisionFeed;
  /** Overrides the configured seed (e.g. derived from the job id, so a retry samples the same answer). */
  seed?: number;
  /** The engine row group of its candidate rows (the tenant; GenerationRequest.group). */
  group?: string;
}

export interface CandidateScore {
  text: string;
  tokens: number;
  eos: boolean;
  reward: number;
  /** Cosine of the image and the candidate sentence; null when it was not part of the score. */
  clip: number | null;
  score: number;
}

export interface SentenceStep {
  index: number;
  candidates: CandidateScore[];
  chosen: number;
  /** Whether the CLIP term was used (false: reward only). */
  usedClip: boolean;
}

export interface AlignResult {
  decision: 'aligned' | 'blocked';
  /** The text the best-of-N search produced (also when blocked: kept for audit, never shown). */
  answer: string;
  /** What to show: `answer` when aligned, the configured blockedAnswer when blocked. */
  finalAnswer: string;
  n: number;
  /** Accepted sentences, in order. */
  sentences: string[];
  /** Index of the chosen candidate at each sentence. */
  chosen: number[];
  candidatesScored: number;
  /** Score of every candidate, per sentence. */
  scores: number[][];
  steps: SentenceStep[];
  /**
   * The final check: reward of the answer (the lower of with and without the prefix), the threshold it was held to,
   * its harm categories, and whether it passed (reward above tau_post and no category flagged).
   */
  final: { answer_safety: number; tau_post: number; passed: boolean } & AnswerCategories;
  finishReason: 'eos' | 'length';
  stats: AlignmentStats;
}

/** Chooses among scored candidates; returns the index of the best (first on ties, as Python's list.index(max)). */
export function chooseCandidate(
  rewards: readonly number[],
  clips: readonly number[] | null,
  sentenceIndex: number,
  anyEos: boolean,
  clipWeight: number,
): { index: number; scores: number[]; usedClip: boolean } {
  const usedClip = clips !== null && sentenceIndex > 1 && !anyEos;
  const scores = rewards.map((r, j) => (usedClip ? r + (clipWeight / sentenceIndex) * clips![j] : r));
  let index = 0;
  for (let j = 1; j < scores.length; j++) if (scores[j] > scores[index]) index = j;
  return { index, scores, usedClip };
}

export class BestOfNAligner {
  readonly config: AlignerConfig;

  constructor(
    private readonly deps: {
      engine: ConversationEngine;
      evaluator: EtaEvaluator;
      /** Required for image jobs' CLIP term; text-only jobs never use it. */
      clip?: ClipEmbedder;
      /** Sentence-end token ids of the VLM's tokenizer (see sentenceEndTokenIds). */
      endTokenIds: number[];
    },
    config: Partial<AlignerConfig> = {},
  ) {
    this.config = resolveAlignerConfig(config);
    if (deps.endTokenIds.length === 0) throw new Error('BestOfNAligner needs at least one sentence-end token id');
  }

  async align(request: AlignRequest): Promise<AlignResult> {
    const { engine, evaluator } = this.deps;
    const c = this.config;
    const useClip = request.image !== undefined && c.clipWeight !== 0;
    if (useClip && !this.deps.clip) throw new Error('BestOfNAligner: an image job needs a CLIP embedder');
    const imageEmbedding = useClip ? (await this.deps.clip!.embedImages([request.image!]))[0] : null;
    const seed = request.seed ?? c.seed;

    const handle = await engine.open({
      prompt: request.prompt,
      image: request.image,
      answerPrefix: c.prefix,
      revision: request.revision,
      group: request.group,
    });
    try {
      const steps: SentenceStep[] = [];
      let generated = 0;
      let finishReason: AlignResult['finishReason'] = 'length';
      for (let i = 1; generated < c.maxTotalTokens; i++) {
        const candidates = await engine.sampleCandidates(handle, {
          n: c.n,
          topK: c.topK,
          temperature: c.temperature,
          endTokenIds: this.deps.endTokenIds,
          maxTokens: Math.min(c.maxSentenceTokens, c.maxTotalTokens - generated),
          seed: seed + i,
        });
        // Before the first accepted sentence the text is the prefix (asking the engine then also trips its
        // decode of an empty token list).
        const soFar = steps.length === 0 ? c.prefix : await engine.text(handle);
        const step = await this.scoreStep(i, soFar, candidates, imageEmbedding);
        steps.push(step);
        await engine.accept(handle, step.chosen);
        const chosen = candidates[step.chosen];
        generated += chosen.tokens.length;
        if (chosen.eos) {
          finishReason = 'eos';
          break;
        }
        // A candidate with no tokens cannot advance the answer; stop rather than loop.
        if (chosen.tokens.length === 0) break;
      }
      const answer = await engine.text(handle);
      const stats = await engine.stats(handle);
      const [check] = await evaluator.scoreAnswers([answer], c.prefix);
      const passed = check.answer_safety > evaluator.config.tauPost && !check.categoryFlagged;
      return {
        decision: passed ? 'aligned' : 'blocked',
        answer,
        finalAnswer: passed ? answer : c.blockedAnswer,
        n: c.n,
        sentences: steps.map((s) => s.candidates[s.chosen].text),
        chosen: steps.map((s) => s.chosen),
        candidatesScored: steps.reduce((a, s) => a + s.candidates.length, 0),
        scores: steps.map((s) => s.candidates.map((k) => k.score)),
        steps,
        final: {
          answer_safety: check.answer_safety,
          tau_post: evaluator.config.tauPost,
          passed,
          categories: check.categories,
          category_scores: check.category_scores,
        },
        finishReason,
        stats,
      };
    } finally {
      await engine.release(handle);
    }
  }

  private async scoreStep(index: number, soFar: string, candidates: Candidate[], imageEmbedding: Float32Array | null): Promise<SentenceStep> {
    const { evaluator, clip } = this.deps;
    const c = this.config;
    // The reference scores the decoded prefix + whole response, stripped.
    const rewards = await evaluator.rewards(
      candidates.map((k) => (soFar + k.text).trim()),
      c.rmPrompt,
    );
    const anyEos = candidates.some((k) => k.eos);
    let clips: number[] | null = null;
    if (imageEmbedding && index > 1 && !anyEos) {
      const texts = await clip!.embedTexts(candidates.map((k) => k.text.trim()));
      clips = texts.map((t) => cosine(imageEmbedding, t));
    }
    const { index: chosen, scores, usedClip } = chooseCandidate(rewards, clips, index, anyEos, c.clipWeight);
    return {
      index,
      chosen,
      usedClip,
      candidates: candidates.map((k, j) => ({
        text: k.text,
        tokens: k.tokens.length,
        eos: k.eos,
        reward: rewards[j],
        clip: usedClip ? clips![j] : null,
        score: scores[j],
      })),
    };
  }
}
