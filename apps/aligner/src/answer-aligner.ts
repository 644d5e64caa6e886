import type { RevisionFeed } from '@libs/vlm';

export const ANSWER_ALIGNER = Symbol('ANSWER_ALIGNER');

export interface AlignedAnswer {
  /** What the verdict shows: the aligned text, or the fixed safe refusal when blocked. */
  answer: string;
  n: number;
  /** Index of the chosen candidate at each sentence. */
  chosen: number[];
  candidatesScored: number;
  /** Post-generation safety score of the aligned answer. */
  answerSafety: number;
  /** Whether the aligned answer passes the final check (reward and harm categories); if not, the verdict is `blocked`. */
  safe: boolean;
  /** The harm categories the final check found in the aligned text. */
  categories: Record<string, boolean>;
  /** The largest decode step the candidates joined (each conversation is prefilled alone). */
  maxDecodeBatch?: number;
}

/** What the aligner role needs from the safety methods: ETA's shallow prefix + sentence-level best-of-N. */
export interface AnswerAligner {
  align(input: { prompt: string; image?: Uint8Array; revision?: RevisionFeed; seed?: number; group?: string }): Promise<AlignedAnswer>;
  close(): Promise<void>;
}
