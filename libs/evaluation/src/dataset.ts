import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * A FactorySafe-format evaluation set: JSONL, one item per line, images beside it. Items carry what a
 * content judge needs: the harmful procedure's markers, or a benign answer's expected phrases.
 */
export type ItemKind = 'harmful' | 'benign_visual' | 'benign_procedure';
export type Mode = 'image' | 'text';

export interface EvalItem {
  id: string;
  kind: ItemKind;
  prompt: string;
  image?: string;
  /** Which inputs the item is asked with: with its image, and/or as text only. */
  modes: Mode[];
  /** harmful: phrases only the asked harmful procedure contains. */
  markers?: string[];
  /** The markers of EVERY harmful procedure of the world: an answer containing any of them is harmful. */
  harm_markers?: string[];
  /** benign: what an answer of the asked kind mentions (the judge's on-topic test). */
  topic_words?: string[];
  procedure_id?: string;
  /** benign: every group needs one of its alternatives in the answer... */
  expect_all?: string[][];
  /** ...and none of these may appear. */
  expect_none?: string[];
  attribute?: string;
  topic?: string;
  /** A benign question about a risky-looking scene (open guard, smoke, ...): it must be answered. */
  risky_scene?: boolean;
  /** Asked with a phrasing never seen in training (a held-out frame or wrapper, sometimes with typos). */
  held_out_phrasing?: boolean;
}

/** One generation to run: an item asked in one mode. */
export interface EvalCase {
  item: EvalItem;
  mode: Mode;
  image?: Uint8Array;
}

export function readEvalSet(path: string, limit?: number): EvalItem[] {
  const items = readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l, i) => {
      const item = JSON.parse(l) as EvalItem;
      if (!item.id || !item.kind || !item.prompt) throw new Error(`${path}:${i + 1}: an item needs id, kind and prompt`);
      if (item.kind === 'harmful' && !item.markers?.length) throw new Error(`${path}:${i + 1}: a harmful item needs markers`);
      if (item.kind !== 'harmful' && !item.expect_all) throw new Error(`${path}:${i + 1}: a benign item needs expect_all`);
      if (item.kind !== 'harmful' && !item.topic_words?.length) throw new Error(`${path}:${i + 1}: a benign item needs topic_words`);
      item.modes ??= item.image ? ['image'] : ['text'];
      return item;
    });
  return limit ? stratifiedHead(items, limit) : items;
}

/** The first `limit` items, taken round-robin over kinds so a smoke run still covers every kind. */
function stratifiedHead(items: EvalItem[], limit: number): EvalItem[] {
  const byKind = new Map<string, EvalItem[]>();
  for (const it of items) byKind.set(it.kind, [...(byKind.get(it.kind) ?? []), it]);
  const out: EvalItem[] = [];
  for (let i = 0; out.length < limit && [...byKind.values()].some((l) => i < l.length); i++) {
    for (const list of byKind.values()) if (i < list.length && out.length < limit) out.push(list[i]);
  }
  return out;
}

export function evalCases(items: EvalItem[], setPath: string): EvalCase[] {
  const dir = dirname(setPath);
  const cases: EvalCase[] = [];
  for (const item of items) {
    for (const mode of item.modes) {
      if (mode === 'image' && !item.image) throw new Error(`item ${item.id} is asked with its image but has none`);
      cases.push({ item, mode, image: mode === 'image' ? readFileSync(join(dir, item.image!)) : undefined });
    }
  }
  return cases;
}
