import type { FinishReason } from './types';

/** What a criterion sees of a row after each sampled token: its tokens and its visible text so far. */
export interface RowProgress {
  readonly tokens: readonly number[];
  readonly token: number;
  /** Visible text, only the tail of which a criterion may read (the detokenizer's running text). */
  readonly text: string;
  /** Length of the text the last token added (0 while the detokenizer holds an incomplete character back). */
  readonly added: number;
}

/** One stop condition, as transformers.js keeps them (`StoppingCriteriaList`): a reason, or undefined to go on. */
export interface StoppingCriterion {
  check(row: RowProgress): FinishReason | undefined;
}

/** Stops when the sampled token is one of `ids`, with `reason` (eos ids -> 'eos', a caller's stop ids -> 'stop_token'). */
export class TokenSetCriterion implements StoppingCriterion {
  private readonly ids: ReadonlySet<number>;
  constructor(
    ids: readonly number[],
    private readonly reason: Extract<FinishReason, 'eos' | 'stop_token'>,
  ) {
    this.ids = new Set(ids);
  }
  check(row: RowProgress): FinishReason | undefined {
    return this.ids.has(row.token) ? this.reason : undefined;
  }
}

/**
 * Stop strings, checked over the tail only: a stop string that ends in the text just added starts at most
 * `longest - 1` characters before it, so each check reads `added + longest - 1` characters, whatever the answer's
 * length (decoding and searching the whole text each token made an answer cost the square of its length).
 */
export class StopStringCriterion implements StoppingCriterion {
  private readonly longest: number;
  constructor(readonly strings: readonly string[]) {
    this.longest = Math.max(0, ...strings.map((s) => s.length));
  }
  check(row: RowProgress): FinishReason | undefined {
    if (row.added === 0) return undefined;
    const tail = row.text.slice(Math.max(0, row.text.length - row.added - this.longest + 1));
    return this.strings.some((s) => tail.includes(s)) ? 'stop_string' : undefined;
  }

  /** Where the text ends once cut after its first stop string (the returned answer ends with it). */
  static cut(text: string, strings: readonly string[]): string {
    let end = -1;
    for (const s of strings) {
      const at = text.indexOf(s);
      if (at >= 0 && (end < 0 || at + s.length < end)) end = at + s.length;
    }
    return end < 0 ? text : text.slice(0, end);
  }
}

export class MaxTokensCriterion implements StoppingCriterion {
  constructor(readonly max: number) {}
  check(row: RowProgress): FinishReason | undefined {
    return row.tokens.length >= this.max ? 'length' : undefined;
  }
}

/** The criteria of one row, first match wins in list order (eos before stop tokens before strings before length). */
export class StoppingCriteria {
  constructor(readonly criteria: readonly StoppingCriterion[]) {}

  static of(options: {
    eosTokenIds: readonly number[];
    stopTokenIds?: readonly number[];
    stopStrings?: readonly string[];
    maxTokens: number;
  }): StoppingCriteria {
    const list: StoppingCriterion[] = [];
    if (options.eosTokenIds.length) list.push(new TokenSetCriterion(options.eosTokenIds, 'eos'));
    const stopIds = (options.stopTokenIds ?? []).filter((id) => !options.eosTokenIds.includes(id));
    if (stopIds.length) list.push(new TokenSetCriterion(stopIds, 'stop_token'));
    const strings = (options.stopStrings ?? []).filter(Boolean);
    if (strings.length) list.push(new StopStringCriterion(strings));
    list.push(new MaxTokensCriterion(options.maxTokens));
    return new StoppingCriteria(list);
  }

  /** Whether any criterion reads text (rows without one skip streaming detokenization when nobody listens). */
  get readsText(): boolean {
    return this.criteria.some((c) => c instanceof StopStringCriterion);
  }

  get stopStrings(): readonly string[] {
    return this.criteria.flatMap((c) => (c instanceof StopStringCriterion ? c.strings : []));
  }

  check(row: RowProgress): FinishReason | undefined {
    for (const c of this.criteria) {
      const reason = c.check(row);
      if (reason) return reason;
    }
    return undefined;
  }
}
