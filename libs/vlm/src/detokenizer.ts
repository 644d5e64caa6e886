/** Decodes ids to text; the pack's tokenizer (ChatTokenizer) in the runtime. */
export interface TokenDecoder {
  decode(ids: number[]): string;
}

/**
 * Streaming detokenization that costs the same per token at any answer length. Like transformers.js's
 * `TextStreamer` it emits only text that can no longer change, and like TGI's `decode_token` it decodes a short
 * window instead of the whole answer: the tokens from `prefix` on are decoded with and without the newest ones,
 * and the difference is new text. The window keeps a few tokens of left context, because a token decoded alone
 * can differ from the same token after others (merge boundaries, byte-level pieces). A window whose text ends in
 * U+FFFD is an incomplete UTF-8 sequence (an emoji split over byte tokens): it is held back until the rest comes.
 */
export class IncrementalDetokenizer {
  private readonly tokens: number[] = [];
  private prefix = 0;
  private read = 0;
  private emitted = '';

  constructor(private readonly decoder: TokenDecoder) {}

  // The tokenizer refuses an empty list.
  private decode(ids: number[]): string {
    return ids.length ? this.decoder.decode(ids) : '';
  }

  /** Text emitted so far. */
  get text(): string {
    return this.emitted;
  }

  /** Adds one token; returns the text it made final ('' while held back). */
  push(token: number): string {
    this.tokens.push(token);
    const window = this.tokens.slice(this.prefix);
    const before = this.decode(window.slice(0, this.read - this.prefix));
    const after = this.decode(window);
    if (after.length <= before.length || after.endsWith('\uFFFD')) {
      // A token that adds nothing (a skipped special token) moves the read mark; the window keeps its context.
      if (after === before) this.read = this.tokens.length;
      return '';
    }
    const delta = after.slice(before.length);
    this.prefix = this.read;
    this.read = this.tokens.length;
    this.emitted += delta;
    return delta;
  }

  /** Whatever is still held back (at the end of the answer an incomplete sequence decodes as it is). */
  flush(): string {
    if (this.read === this.tokens.length) return '';
    const window = this.tokens.slice(this.prefix);
    const before = this.decode(window.slice(0, this.read - this.prefix));
    const after = this.decode(window);
    const delta = after.slice(before.length);
    this.prefix = this.read = this.tokens.length;
    this.emitted += delta;
    return delta;
  }
}
