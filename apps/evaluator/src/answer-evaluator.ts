import type { Policy } from '@libs/contracts';

export const ANSWER_EVALUATOR = Symbol('ANSWER_EVALUATOR');

export interface AnswerEvaluation {
  scores: { image_risk: number | null; answer_safety: number | null };
  thresholds: { image_risk: number; answer_safety: number };
  /** Whether the job goes to the aligner, under the job's policy. */
  flagged: boolean;
  /** Harm categories of the answer (empty without a category head). */
  categories: Record<string, boolean>;
  category_scores: Record<string, number>;
}

/** What the evaluator role needs from the safety methods: ETA's pre- and post-generation scores. */
export interface AnswerEvaluator {
  evaluate(input: { prompt: string; image?: Uint8Array; answer: string; policy: Policy }): Promise<AnswerEvaluation>;
  /** The scoring models and the version of the policy (thresholds included) verdicts are judged under. */
  describe(): { name: string; fingerprint: string; policyVersion: string };
  close(): Promise<void>;
}
