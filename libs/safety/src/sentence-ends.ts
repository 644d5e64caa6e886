/**
 * Token ids that end a best-of-N candidate sentence. The reference stops on the single '.' token (id 29889 for
 * LLaMA/Vicuna, `convert_tokens_to_ids('.')` for InternLM); here: every vocabulary entry that decodes to exactly one
 * of the configured endings, surrounding whitespace aside (so both '.' and a word-boundary '▁.' count), read from
 * the pack's own tokenizer so no id is hard-coded.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ChatTokenizer } from '@libs/vlm';

export function sentenceEndTokenIdsFromTokenizer(tokenizer: Pick<ChatTokenizer, 'idsDecodingTo'>, endings: readonly string[]): number[] {
  const set = new Set(endings);
  return tokenizer.idsDecodingTo((text) => set.has(text.trim()));
}

export function sentenceEndTokenIds(packDir: string, endings: readonly string[] = ['.']): number[] {
  const read = (f: string) => JSON.parse(readFileSync(join(packDir, f), 'utf8'));
  const tokenizer = new ChatTokenizer(read('tokenizer.json'), read('tokenizer_config.json'));
  const ids = sentenceEndTokenIdsFromTokenizer(tokenizer, endings);
  if (ids.length === 0) throw new Error(`no token of ${packDir}/tokenizer.json decodes to ${endings.map((e) => JSON.stringify(e)).join(', ')}`);
  return ids;
}
