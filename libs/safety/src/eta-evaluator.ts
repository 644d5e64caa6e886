/**
 * ETA's bi-level evaluator.
 *   pre:  S_CLIP(image) = max(cos(CLIP_image(x), CLIP_text(P)), 0); the image is flagged when S_CLIP >= tau_pre.
 *   post: S_RM(answer) = reward of [user: fixed safety instruction, assistant: answer]; the real user query is NOT
 *         shown (the reference's safety-specific format). The answer is flagged when S_RM <= tau_post.
 * Policy 'both' (reference): flagged only when both flag; 'either': when one does; 'answer': when the answer does. Text-only jobs have no pre score; the reference then
 * decides on the reward model alone, so a text-only job is flagged exactly when its answer is, under either policy.
 */
import { cosine, type ChatMessage, type ClipEmbedder, type ConversationClassifier } from '@libs/vlm';
import { resolveEtaConfig, type EtaConfig, type EtaPolicy } from './config';

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
}

/** The decision from the two scores; pure, so the rule is tested without models. */
export function etaDecision(
  imageRisk: number | null,
  answerSafety: number,
  config: Pick<EtaConfig, 'tauPre' | 'tauPost' | 'policy'>,
): Omit<EtaEvaluation, 'scores'> {
  const imageFlagged = imageRisk === null ? null : imageRisk >= config.tauPre;
  const answerFlagged = answerSafety <= config.tauPost;
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
    if (answers.length === 0) return [];
    const logits = await this.deps.reward.classify(answers.map((a) => safetyConversation(instruction, a)));
    const k = rewardIndex(this.deps.reward.labels, this.config.rewardLabel);
    return logits.map((l) => l[k]);
  }

  async evaluate(job: { image?: Uint8Array; answer: string }): Promise<EtaEvaluation> {
    return (await this.evaluateBatch([job]))[0];
  }

  /** Both evaluators always run: the verdict reports both scores, and each is one cheap batched call. */
  async evaluateBatch(jobs: { image?: Uint8Array; answer: string }[]): Promise<EtaEvaluation[]> {
    const withImage = jobs.map((j, i) => (j.image ? i : -1)).filter((i) => i >= 0);
    const [risks, rewards] = await Promise.all([this.imageRisks(withImage.map((i) => jobs[i].image!)), this.rewards(jobs.map((j) => j.answer))]);
    const riskOf = new Map(withImage.map((i, k) => [i, risks[k]]));
    return jobs.map((_, i) => {
      const imageRisk = riskOf.get(i) ?? null;
      return { ...etaDecision(imageRisk, rewards[i], this.config), scores: { image_risk: imageRisk, answer_safety: rewards[i] } };
    });
  }
}
