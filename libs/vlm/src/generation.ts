import { DecodeBatch, tapFrame } from './decode-batch';
import { checkProbe } from './linear-probe';
import { BestOfNConversations } from './conversations';
import { PromptEmbedder } from './prompt-embedder';
import { seededRandom } from './sampler';
import { DecodeScheduler, type RowOutcome, type SchedulerOptions, type SchedulerStats } from './scheduler';
import { StopStringCriterion, StoppingCriteria } from './stopping-criteria';
import type { VlmProcessor } from './vlm-processor';
import type { VlmModel } from './vlm-model';
import type {
  AlignmentStats,
  Candidate,
  CandidateOptions,
  ConversationRequest,
  GenerationRequest,
  GenerationResult,
  TapFrame,
  TapRequest,
  TokenCallback,
} from './types';

/**
 * What the engine runs on its thread: every generation goes through one continuous-batching scheduler, so
 * concurrent `generate` calls (one per BullMQ job) and best-of-N candidate rows share decode batches.
 * Named for what it is; the class used to be `Generator`, which shadowed the built-in type of generator objects.
 */
export class GenerationRuntime {
  readonly scheduler: DecodeScheduler;
  private readonly prompts: PromptEmbedder;
  readonly conversations: BestOfNConversations;

  constructor(
    private readonly model: VlmModel,
    private readonly processor: VlmProcessor,
    options: SchedulerOptions = {},
  ) {
    this.prompts = new PromptEmbedder(model, processor);
    this.scheduler = new DecodeScheduler(model, processor.tokenizer, this.prompts, options);
    this.conversations = new BestOfNConversations(model, this.scheduler, this.prompts, (ids) => processor.tokenizer.decode(ids));
  }

  get stats(): SchedulerStats {
    return { ...this.scheduler.stats };
  }

  /** Each request becomes one scheduler row; they may run in different batches, with rows of other calls. */
  async generate(requests: GenerationRequest[], onToken?: TokenCallback): Promise<GenerationResult[]> {
    for (const r of requests) {
      if (r.probes?.length && !this.model.revisable) throw new RangeError('probes read taps: the decoder needs tap outputs (modctl model prepare)');
      for (const p of r.probes ?? []) checkProbe(p, this.model.pack.text);
    }
    const prepared = await Promise.all(
      requests.map((r) => this.prompts.encode({ prompt: r.prompt, image: r.image, assistantText: r.answerPrefix }, r.revision)),
    );
    const pack = this.model.pack;
    return Promise.all(
      requests.map(async (request, i) => {
        const maxNewTokens = request.maxNewTokens ?? pack.maxNewTokens;
        const criteria = StoppingCriteria.of({
          eosTokenIds: request.ignoreEos ? [] : pack.eosTokenIds,
          stopTokenIds: request.stopTokenIds,
          stopStrings: request.stopStrings,
          maxTokens: maxNewTokens,
        });
        const outcome = await this.scheduler.submit({
          start: { kind: 'prompt', prompt: prepared[i] },
          feed: request.revision,
          group: request.group,
          sampling: request.sampling,
          random: seededRandom(request.sampling?.seed ?? Math.floor(Math.random() * 2 ** 32)),
          criteria,
          maxNewTokens,
          taps: Boolean(request.taps),
          probes: request.probes,
          keepState: false,
          onToken: onToken ? (token, delta) => onToken(i, token, delta) : undefined,
        });
        return this.result(request, outcome, prepared[i].length, criteria);
      }),
    );
  }

  private result(request: GenerationRequest, o: RowOutcome, promptTokens: number, criteria: StoppingCriteria): GenerationResult {
    // One whole decode at the end: the returned text is the tokenizer's, whatever the stream emitted.
    let text = this.processor.tokenizer.decode(o.tokens);
    if (o.finishReason === 'stop_string') text = StopStringCriterion.cut(text, criteria.stopStrings);
    return {
      text: (request.answerPrefix ?? '') + text,
      tokens: o.tokens,
      promptTokens,
      finishReason: o.finishReason,
      ...(o.taps ? { taps: o.taps } : {}),
      ...(o.probes ? { probes: o.probes } : {}),
      ...(o.revisionScale !== undefined ? { revisionScale: o.revisionScale } : {}),
      timings: { prefillMs: o.prefillMs, decodeMs: o.decodeMs },
      batch: { prefill: o.prefillBatch, maxDecode: o.maxBatch },
    };
  }

  /** One teacher-forced forward pass per batch; the frame of each request's last token. */
  async readTaps(requests: TapRequest[]): Promise<TapFrame[]> {
    const prepared = await Promise.all(requests.map((r) => this.prompts.encode({ prompt: r.prompt, image: r.image, assistantText: r.response }, r.revision)));
    return this.scheduler.exclusive(async () => {
      const embeds = await this.prompts.embedAll(prepared);
      const { out } = await DecodeBatch.prefill(
        this.model,
        embeds,
        prepared.map((p) => p.length),
        requests.map((r) => r.revision),
      );
      return requests.map((_, r) => tapFrame(this.model, out, r));
    });
  }

  open(request: ConversationRequest): Promise<number> {
    return this.conversations.open(request);
  }

  sampleCandidates(handle: number, options: CandidateOptions): Promise<Candidate[]> {
    return this.conversations.sampleCandidates(handle, options);
  }

  accept(handle: number, index: number): Promise<void> {
    return this.conversations.accept(handle, index);
  }

  text(handle: number): Promise<string> {
    return this.conversations.text(handle);
  }

  conversationStats(handle: number): Promise<AlignmentStats> {
    return this.conversations.stats(handle);
  }

  release(handle: number): Promise<void> {
    return this.conversations.release(handle);
  }
}
