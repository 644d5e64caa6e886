import { DecodeBatch } from './decode-batch';
import type { KvCache } from './kv-cache';
import { seededRandom } from './sampler';
import type { DecodeScheduler } from './scheduler';
import { StoppingCriteria } from './stopping-criteria';
import type { PromptEmbedder } from './prompt-embedder';
import type { AlignmentStats, Candidate, CandidateOptions, ConversationRequest, RevisionFeed } from './types';
import type { VlmModel } from './vlm-model';

/** One conversation of sentence-level best-of-N: a single-row cache and the logits for its next token. */
interface Conversation {
  cache: KvCache;
  nextLogits: Float32Array;
  nextPosition: number;
  feed?: RevisionFeed;
  group?: string;
  prefix: string;
  tokens: number[];
  finished: boolean;
  stats: AlignmentStats;
  pending?: { candidates: Candidate[]; states: ({ cache: KvCache; nextPosition: number; logits: Float32Array } | undefined)[] };
}

/**
 * The stepwise conversations of sentence-level best-of-N (ETA deep alignment). A conversation is prefilled once;
 * each round forks its cache into `n` candidate rows that go through the scheduler like any other row, so the
 * candidates of several flagged jobs (and plain generations) share decode batches. A candidate that ends at a
 * sentence end or its token limit feeds its last token once more, so the chosen row's cache and next-token
 * logits are complete; one that ends with eos ends the answer and needs neither.
 */
export class BestOfNConversations {
  private readonly conversations = new Map<number, Conversation>();
  private nextHandle = 1;

  constructor(
    private readonly model: VlmModel,
    private readonly scheduler: DecodeScheduler,
    private readonly prompts: PromptEmbedder,
    private readonly decode: (ids: number[]) => string,
  ) {}

  async open(request: ConversationRequest): Promise<number> {
    const vocab = this.model.pack.text.vocabSize;
    const prompt = await this.prompts.encode({ prompt: request.prompt, image: request.image, assistantText: request.answerPrefix }, request.revision);
    const { batch, out, feeds } = await this.scheduler.exclusive(async () =>
      DecodeBatch.prefill(this.model, await this.prompts.embedAll([prompt]), [prompt.length], [request.revision]),
    );
    const n = prompt.length;
    const handle = this.nextHandle++;
    this.conversations.set(handle, {
      cache: batch.cache,
      nextLogits: out.logits.slice((n - 1) * vocab, n * vocab),
      nextPosition: n,
      // A gated revision is resolved once, at the conversation's prefill; every candidate continues with that scale.
      feed: feeds[0],
      group: request.group,
      prefix: request.answerPrefix ?? '',
      tokens: [],
      finished: false,
      stats: { prefillTokens: n, decodeSteps: 0, maxBatch: 1 },
    });
    return handle;
  }

  private conversation(handle: number): Conversation {
    const c = this.conversations.get(handle);
    if (!c) throw new Error(`no open conversation ${handle}`);
    return c;
  }

  async sampleCandidates(handle: number, options: CandidateOptions): Promise<Candidate[]> {
    const c = this.conversation(handle);
    if (c.finished) throw new Error(`conversation ${handle} already ended with eos`);
    const eosTokenIds = this.model.pack.eosTokenIds;
    const criteria = StoppingCriteria.of({ eosTokenIds, stopTokenIds: options.endTokenIds, maxTokens: options.maxTokens });
    const sampling = { temperature: options.temperature, topK: options.topK };
    const outcomes = await Promise.all(
      Array.from({ length: options.n }, (_, j) =>
        this.scheduler.submit({
          start: { kind: 'resume', cache: c.cache, nextPosition: c.nextPosition, logits: c.nextLogits },
          feed: c.feed,
          group: c.group,
          sampling,
          random: seededRandom((options.seed * 7919 + j * 104729) >>> 0),
          criteria,
          maxNewTokens: options.maxTokens,
          taps: false,
          keepState: true,
        }),
      ),
    );
    c.stats.decodeSteps += Math.max(...outcomes.map((o) => o.steps));
    c.stats.maxBatch = Math.max(c.stats.maxBatch, ...outcomes.map((o) => o.maxBatch));
    const candidates = outcomes.map((o) => ({ tokens: o.tokens, text: this.decode(o.tokens), eos: o.finishReason === 'eos' }));
    c.pending = { candidates, states: outcomes.map((o) => o.state) };
    return candidates;
  }

  async accept(handle: number, index: number): Promise<void> {
    const c = this.conversation(handle);
    const pending = c.pending;
    if (!pending || index < 0 || index >= pending.candidates.length) throw new Error(`conversation ${handle} has no candidate ${index}`);
    const chosen = pending.candidates[index];
    c.tokens.push(...chosen.tokens);
    c.pending = undefined;
    if (chosen.eos) {
      c.finished = true;
      return;
    }
    const state = pending.states[index]!;
    c.cache = state.cache;
    c.nextLogits = state.logits;
    c.nextPosition = state.nextPosition;
  }

  async text(handle: number): Promise<string> {
    const c = this.conversation(handle);
    return c.tokens.length ? c.prefix + this.decode(c.tokens) : c.prefix;
  }

  async stats(handle: number): Promise<AlignmentStats> {
    return { ...this.conversation(handle).stats };
  }

  async release(handle: number): Promise<void> {
    this.conversations.delete(handle);
  }
}
