import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The PyTorch reference outputs written by tools/modelzoo (independent of this runtime). */
export const TINY_VLM = resolve(__dirname, '../../../models/tiny-vlm');

export interface GoldenCase {
  level: 'layer' | 'head' | null;
  positions: 'last' | 'all' | null;
  prefill_last_logits: number[];
  tap_layer: number[][];
  tap_head: number[][];
  tokens: number[];
  text: string;
}

export interface VlmGolden {
  dims: { layers: number; hidden: number; heads: number; kv_heads: number; head_dim: number; vocab: number; image_seq_len: number };
  image: string;
  prompt_text: string;
  prompt_expanded: string;
  input_ids: number[];
  pixel_values: { dims: number[]; data: number[] };
  revision: { layer: { data: number[] }; head: { data: number[] } };
  max_new_tokens: number;
  cases: Record<'none' | 'layer_last' | 'layer_all' | 'head_last' | 'head_all', GoldenCase>;
  text_only: GoldenCase & { prompt_text: string; input_ids: number[]; messages: { role: string; content: { type: string; text?: string }[] }[] };
  messages: { role: string; content: { type: string; text?: string }[] }[];
}

export function loadVlmGolden(): VlmGolden {
  return JSON.parse(readFileSync(join(TINY_VLM, 'reference', 'golden.json'), 'utf8'));
}

export function goldenPrompt(messages: VlmGolden['messages']): string {
  return messages[0].content.find((c) => c.type === 'text')!.text!;
}

export function goldenImage(): Uint8Array {
  return readFileSync(join(TINY_VLM, 'reference', 'image.png'));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
