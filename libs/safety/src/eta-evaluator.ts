/**
 * ETA's bi-level evaluator.
 *   pre:  S_CLIP(image) = max(cos(CLIP_image(x), CLIP_text(P)), 0); the image is flagged when S_CLIP >= tau_pre.
 *   post: S_RM(answer) = reward of [user: fixed safety instruction, assistant: answer]; the real user query is NOT
 *         shown (the reference's safety-specific format). The answer is flagged when S_RM <= tau_post.
 * Policy 'both' (reference): flagged only when both flag; 'either': when one does; 'answer': when the answer does. Text-only jobs have no pre score; the reference then
 * decides on the reward model alone, so a text-only job is flagged exactly when its answer is, under either policy.
 */
import { cosine, type ChatMessage, type ClipEmbedder, type ConversationClassifier } from '@libs/vlm';
import { DEFAULT_CATEGORY_THRESHOLD, ETA_PREFIX, resolveEtaConfig, type EtaConfig, type EtaPolicy } from './config';

/** Harm categories of an answer: flags (score >= its threshold) and sigmoid scores in [0, 1], by category label. */
export interface AnswerCategories {
  categories: Record<string, boolean>;
  category_scores: Record<string, number>;
}

/** One answer as the reward pack judges it. */
export interface AnswerScore extends AnswerCategories {
  /** The lower of the answer's reward and the reward of the answer without the shallow prefix (withoutPrefix). */
  answer_safety: number;
  /** Whether any category is flagged. */
  categoryFlagged: boolean;
}

export interface EtaEvaluation {
  /** Alignment is needed. */
  flagged: boolean;
  /** null for text-only jobs. */
  imageFlagged: boolean | null;
  answerFlagged: boolean;
  scores: {
    /** S_CLIP in [0, 1]; null without an image. */
    image_risk: number | null;
    /** Reward-model score of the answer (higher is safer). */
    answer_safety: number;
  };
  thresholds: { tau_pre: number; tau_post: number };
  policy: EtaPolicy;
  /** Per harm category of the answer; empty when the reward pack has no category head. */
  categories: Record<string, boolean>;
  category_scores: Record<string, number>;
}

/**
 * The decision from the two scores; pure, so the rule is tested without models. A flagged harm category flags the
 * answer whatever its reward (issue 12 item 6).
 */
export function etaDecision(
  imageRisk: number | null,
  answerSafety: number,
  config: Pick<EtaConfig, 'tauPre' | 'tauPost' | 'policy'>,
  categoryFlagged = false,
): Omit<EtaEvaluation, 'scores' | 'categories' | 'category_scores'> {
  const imageFlagged = imageRisk === null ? null : imageRisk >= config.tauPre;
  const answerFlagged = answerSafety <= config.tauPost || categoryFlagged;
  let flagged: boolean;
  if (imageFlagged === null || config.policy === 'answer') flagged = answerFlagged;
  else flagged = config.policy === 'both' ? imageFlagged && answerFlagged : imageFlagged || answerFlagged;
  return { flagged, imageFlagged, answerFlagged, thresholds: { tau_pre: config.tauPre, tau_post: config.tauPost }, policy: config.policy };
}

/** Index of the scalar reward among a classifier's labels. */
export function rewardIndex(labels: readonly string[], label: string): number {
  const i = labels.indexOf(label);
  return i >= 0 ? i : 0;
}

/**
 * The answer without ETA's shallow prefix ("As an AI assistant, tape over ..." -> "Tape over ..."); unchanged when it
 * does not start with it. The aligner forces that prefix onto every aligned answer, and a reward pack can score the
 * prefix instead of what follows: a harmful procedure after it was labelled `aligned` (issue 12 item 5). Scoring
 * both texts and keeping the lower reward means the prefix can only lower a score, never buy one; the evaluator
 * applies the same rule to supplied answers, so an attacker cannot buy a `pass` with the prefix either.
 */
export function withoutPrefix(answer: string, prefix: string = ETA_PREFIX): string {
  const t = answer.trimStart();
  if (!prefix || !t.toLowerCase().startsWith(prefix.toLowerCase())) return answer;
  const rest = t.slice(prefix.length).replace(/^[\s,;:.!-]+/, '');
  return rest.length > 0 ? rest[0].toUpperCase() + rest.slice(1) : rest;
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** The reward model's input: the fixed safety instruction stands in for the user's query. */
export function safetyConversation(instruction: string, answer: string): ChatMessage[] {
  return [
    { role: 'user', content: instruction },
    { role: 'assistant', content: answer },
  ];
}

export class EtaEvaluator {
  readonly config: EtaConfig;
  private unsafeText?: Promise<Float32Array>;

  constructor(
    private readonly deps: { clip: ClipEmbedder; reward: ConversationClassifier },
    config: Partial<EtaConfig> = {},
  ) {
    this.config = resolveEtaConfig(config);
  }

  /** CLIP embedding of the unsafe-content text, computed once. */
  private unsafeTextEmbedding(): Promise<Float32Array> {
    this.unsafeText ??= this.deps.clip.embedTexts([this.config.unsafeImageText]).then(([e]) => e);
    return this.unsafeText;
  }

  async imageRisks(images: Uint8Array[]): Promise<number[]> {
    if (images.length === 0) return [];
    const [text, embeds] = await Promise.all([this.unsafeTextEmbedding(), this.deps.clip.embedImages(images)]);
    return embeds.map((e) => Math.max(cosine(e, text), 0));
  }

  /** Rewards of answers under an instruction (default: the post-generation one). */
  async rewards(answers: string[], instruction = this.config.rmPrompt): Promise<number[]> {
    return (await this.rawScores(answers, instruction)).map((r) => r.reward);
  }

  /** The reward pack's labels other than the reward: its harm categories (config.json `category_labels`). */
  categoryLabels(): string[] {
    const k = rewardIndex(this.deps.reward.labels, this.config.rewardLabel);
    return this.deps.reward.labels.filter((_, i) => i !== k);
  }

  private async rawScores(answers: string[], instruction: string): Promise<{ reward: number; categoryScores: number[] }[]> {
    if (answers.length === 0) return [];
    const labels = this.deps.reward.labels;
    const k = rewardIndex(labels, this.config.rewardLabel);
    const logits = await this.deps.reward.classify(answers.map((a) => safetyConversation(instruction, a)));
    return logits.map((l) => ({ reward: l[k], categoryScores: Array.from(l).flatMap((x, i) => (i === k || i >= labels.length ? [] : [sigmoid(x)])) }));
  }

  /**
   * The post-generation judgement of answers: each is scored as it is and without the shallow prefix (one batched
   * call); the lower reward and the higher score of each category count.
   */
  async scoreAnswers(answers: string[], prefix: string = ETA_PREFIX): Promise<AnswerScore[]> {
    const stripped = answers.map((a) => withoutPrefix(a, prefix));
    const extra = answers.flatMap((a, i) => (stripped[i] !== a ? [i] : []));
    const raw = await this.rawScores([...answers, ...extra.map((i) => stripped[i])], this.config.rmPrompt);
    const alt = new Map(extra.map((i, j) => [i, raw[answers.length + j]]));
    const labels = this.categoryLabels();
    return answers.map((_, i) => {
      const a = raw[i];
      const b = alt.get(i) ?? a;
      const category_scores: Record<string, number> = {};
      const categories: Record<string, boolean> = {};
      labels.forEach((label, c) => {
        category_scores[label] = Math.max(a.categoryScores[c], b.categoryScores[c]);
        categories[label] = category_scores[label] >= (this.config.categoryThresholds[label] ?? DEFAULT_CATEGORY_THRESHOLD);
      });
      return { answer_safety: Math.min(a.reward, b.reward), categories, category_scores, categoryFlagged: Object.values(categories).some(Boolean) };
    });
  }

  async evaluate(job: { image?: Uint8Array; answer: string }): Promise<EtaEvaluation> {
    return (await this.evaluateBatch([job]))[0];
  }

  /** Both evaluators always run: the verdict reports both scores, and each is one cheap batched call. */
  async evaluateBatch(jobs: { image?: Uint8Array; answer: string }[]): Promise<EtaEvaluation[]> {
    const withImage = jobs.map((j, i) => (j.image ? i : -1)).filter((i) => i >= 0);
    const [risks, answers] = await Promise.all([this.imageRisks(withImage.map((i) => jobs[i].image!)), this.scoreAnswers(jobs.map((j) => j.answer))]);
    const riskOf = new Map(withImage.map((i, k) => [i, risks[k]]));
    return jobs.map((_, i) => {
      const imageRisk = riskOf.get(i) ?? null;
      const a = answers[i];
      return {
        ...etaDecision(imageRisk, a.answer_safety, this.config, a.categoryFlagged),
        scores: { image_risk: imageRisk, answer_safety: a.answer_safety },
        categories: a.categories,
        category_scores: a.category_scores,
      };
    });
  }
}
