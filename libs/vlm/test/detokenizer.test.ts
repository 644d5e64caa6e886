/** Incremental detokenization and the stop criteria: same text as one whole decode, at a cost that does not grow. */
import { describe, expect, it } from 'vitest';
import { ChatTokenizer, IncrementalDetokenizer, StoppingCriteria, StopStringCriterion, loadVlmPack, type TokenDecoder } from '@libs/vlm';
import { TINY_VLM, loadVlmGolden } from './golden';

const pack = loadVlmPack(TINY_VLM);
const tokenizer = new ChatTokenizer(pack.tokenizerJson, pack.tokenizerConfig);
const golden = loadVlmGolden();

/** Counts how many ids each decode call gets. */
class CountingDecoder implements TokenDecoder {
  longest = 0;
  calls = 0;
  decode(ids: number[]): string {
    this.calls++;
    this.longest = Math.max(this.longest, ids.length);
    return tokenizer.decode(ids);
  }
}

function stream(ids: number[], decoder: TokenDecoder = tokenizer): string[] {
  const d = new IncrementalDetokenizer(decoder);
  const deltas = ids.map((id) => d.push(id));
  deltas.push(d.flush());
  return deltas;
}

describe('IncrementalDetokenizer', () => {
  const text = 'The guard is open. Stop the press, lock it out — then check the light curtain: ça marche? 🙂 ok\nnext line  spaced';
  const ids = tokenizer.encode(text);

  it('emits deltas that add up to the whole decode, for golden answers and multi-byte text', () => {
    for (const tokens of [golden.cases.none.tokens, golden.text_only.tokens, ids]) expect(stream(tokens).join('')).toBe(tokenizer.decode(tokens));
  });

  it('holds back an incomplete UTF-8 sequence instead of emitting a replacement character', () => {
    const emoji = tokenizer.encode('🙂');
    expect(emoji.length).toBeGreaterThan(1); // byte-level pieces
    const deltas = stream([...tokenizer.encode('ok '), ...emoji]);
    expect(deltas.some((d) => d.includes('\uFFFD'))).toBe(false);
    expect(deltas.join('')).toBe('ok 🙂');
  });

  it('decodes a short window per token, whatever the answer length', () => {
    const long = Array.from({ length: 1024 }, (_, i) => ids[i % ids.length]);
    const decoder = new CountingDecoder();
    expect(stream(long, decoder).join('')).toBe(tokenizer.decode(long));
    expect(decoder.longest).toBeLessThanOrEqual(8);
    expect(decoder.calls).toBeLessThanOrEqual(2 * long.length + 2);
  });
});

describe('StoppingCriteria', () => {
  const progress = (tokens: number[], text: string, added: number) => ({ tokens, token: tokens[tokens.length - 1], text, added });

  it('checks eos, stop tokens, stop strings and max tokens, in that order', () => {
    const criteria = StoppingCriteria.of({ eosTokenIds: [2], stopTokenIds: [2, 7], stopStrings: ['END'], maxTokens: 3 });
    expect(criteria.check(progress([2], '', 0))).toBe('eos');
    expect(criteria.check(progress([7], 'x', 1))).toBe('stop_token');
    expect(criteria.check(progress([5, 5], 'aEN', 1))).toBeUndefined();
    expect(criteria.check(progress([5, 5, 5], 'aEND', 1))).toBe('stop_string');
    expect(criteria.check(progress([5, 5, 5], 'abc', 1))).toBe('length');
  });

  it('finds a stop string that spans tokens by reading only the tail', () => {
    const c = new StopStringCriterion(['light curtain']);
    const head = 'x'.repeat(10_000);
    expect(c.check(progress([1], head + 'the light curt', 4))).toBeUndefined();
    expect(c.check(progress([1], head + 'the light curtain', 3))).toBe('stop_string');
    // A stop string that lies wholly before the newest text was already seen (and would have stopped the row).
    expect(c.check(progress([1], 'light curtain' + head, 5))).toBeUndefined();
    expect(StopStringCriterion.cut('a light curtain here', ['curtain', 'light'])).toBe('a light');
  });
});
