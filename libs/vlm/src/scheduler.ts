import { DecodeBatch, tapFrame } from './decode-batch';
import { IncrementalDetokenizer, type TokenDecoder } from './detokenizer';
import { readProbe } from './linear-probe';
import type { KvCache } from './kv-cache';
import { pickToken } from './sampler';
import { StopStringCriterion, type StoppingCriteria } from './stopping-criteria';
import type { ForwardOutput, VlmModel } from './vlm-model';
import type { PreparedPrompt, PromptEmbedder } from './prompt-embedder';
import type { FinishReason, LinearProbe, RevisionFeed, SamplingOptions, TapFrame } from './types';

/**
 * The scheduler's budgets, named after TGI's router (`next_batch(min_size, max_size, prefill_token_budget,
 * token_budget)`). Unset fields get the defaults below, filled in one place (`resolveSchedulerOptions`).
 */
export interface SchedulerOptions {
  /**
   * Rows in one forward call at most: new rows wait while this many decode.
   * @defaultValue 32
   */
  maxBatchSize?: number;
  /**
   * Fewest rows a prefill takes while a batch is running (TGI's `min_size`): each prefill stalls the running rows and
   * a prefill of a few rows costs far more per token than one of many, so newcomers gather until this many wait (or
   * as many as there are free slots), or until the oldest has waited `maxWaitMs`. An idle engine starts at once.
   * @defaultValue 8
   */
  minBatchSize?: number;
  /**
   * Prompt tokens prefilled in one forward call at most (TGI `max_batch_prefill_tokens`): bounds the stall a
   * prefill causes the running rows. A single longer prompt still runs, alone.
   * @defaultValue 4096
   */
  maxPrefillTokens?: number;
  /**
   * Tokens all rows of the batch may hold at once, each row counted at its prompt plus its maximum new tokens
   * (TGI `max_batch_total_tokens`): what bounds the KV cache, so size it from the accelerator's free memory.
   * @defaultValue 65536
   */
  maxBatchTokens?: number;
  /**
   * How long a waiting request may be held back by `minBatchSize`: what batching may add to a job's latency.
   * @defaultValue 50
   */
  maxWaitMs?: number;
  /**
   * Half-life, in decode steps, of a group's usage (the row-steps its rows ran; see RowSpec.group). When the batch is
   * full, waiting rows of the group that used it least go first and may preempt running rows of the group that used
   * it most, so a tenant's backlog cannot hold every slot while another tenant's rows wait. 256 steps is seconds of
   * decoding: long enough that a newcomer's first batch-full runs before the backlog gets its slots back, short
   * enough that two backlogged groups converge to equal shares.
   * @defaultValue 256
   */
  groupHalfLifeSteps?: number;
  /**
   * Longest the waiting rows of a group are held back while rows of a group that used the batch far less (less than
   * half as much, and by more than one full step, `maxBatchSize` row-steps) run or wait: a newcomer's rows then decode
   * in a batch that shrinks as the backlog's running rows finish, and no prefill of the backlog stalls them. On a CPU a
   * step of 32 rows costs several times a step of a few, so this is most of a newcomer's latency (bench/fairness.ts).
   * The hold lasts until the lighter rows are gone or this has passed, and does not begin again before they are gone:
   * a tenant that keeps a row in the engine at all times costs the backlog one hold, not a share of every step. On a
   * GPU, where a step costs about the same for 1 row as for 32, it buys only the avoided prefill stalls (not measured
   * here); 0 turns it off.
   * @defaultValue 500
   */
  groupHoldMs?: number;
}

export const DEFAULT_SCHEDULER_OPTIONS: Readonly<Required<SchedulerOptions>> = Object.freeze({
  maxBatchSize: 32,
  minBatchSize: 8,
  maxPrefillTokens: 4096,
  maxBatchTokens: 65536,
  maxWaitMs: 50,
  groupHalfLifeSteps: 256,
  groupHoldMs: 500,
});

export function resolveSchedulerOptions(options: SchedulerOptions = {}): Required<SchedulerOptions> {
  const o = { ...DEFAULT_SCHEDULER_OPTIONS };
  for (const [k, v] of Object.entries(options) as [keyof SchedulerOptions, number | undefined][]) if (v !== undefined) o[k] = v;
  if (!(o.maxBatchSize >= 1)) throw new RangeError('maxBatchSize must be at least 1');
  if (!(o.minBatchSize >= 1)) throw new RangeError('minBatchSize must be at least 1');
  if (!(o.groupHalfLifeSteps > 0)) throw new RangeError('groupHalfLifeSteps must be positive');
  if (!(o.groupHoldMs >= 0)) throw new RangeError('groupHoldMs must be at least 0');
  return o;
}

/** What admission needs to know of a waiting row. */
export interface WaitingCost {
  /** Tokens its prefill runs (0 for a row resumed from a cache). */
  prefillTokens: number;
  /** Tokens it may hold in the cache: prompt (or resumed cache) + its maximum new tokens. */
  reservedTokens: number;
}

/**
 * How many rows from the front of the queue join now (FIFO, so no request starves). The first row of an idle
 * engine is always admitted, however long: a budget that can never be met must not park it forever.
 */
export function admissibleRows(
  waiting: readonly WaitingCost[],
  running: { rows: number; reservedTokens: number },
  options: Required<SchedulerOptions>,
  oldestWaitMs: number,
): number {
  let n = 0;
  let prefill = 0;
  let total = running.reservedTokens;
  for (const w of waiting) {
    if (running.rows + n >= options.maxBatchSize) break;
    const first = running.rows + n === 0;
    if (!first && prefill + w.prefillTokens > options.maxPrefillTokens) break;
    if (!first && total + w.reservedTokens > options.maxBatchTokens) break;
    n++;
    prefill += w.prefillTokens;
    total += w.reservedTokens;
  }
  // Never wait for more rows than there are free slots, and never hold an idle engine back.
  const wanted = Math.min(options.minBatchSize, options.maxBatchSize - running.rows);
  if (running.rows > 0 && n < wanted && oldestWaitMs < options.maxWaitMs) return 0;
  return n;
}

/** How a row starts: a prompt to prefill, or a cache it continues (a best-of-N candidate). */
export type RowStart = { kind: 'prompt'; prompt: PreparedPrompt } | { kind: 'resume'; cache: KvCache; nextPosition: number; logits: Float32Array };

/** One request's row: everything that makes its tokens its own, whichever batch it lands in. */
export interface RowSpec {
  start: RowStart;
  /**
   * Who the row is run for (a tenant): rows of different groups share a full batch by usage (see
   * SchedulerOptions.groupHalfLifeSteps); rows without one form one group, served first come, first served.
   */
  group?: string;
  feed?: RevisionFeed;
  sampling?: SamplingOptions;
  /** The row's own random stream (seeded), so its samples do not depend on its neighbours. */
  random: () => number;
  criteria: StoppingCriteria;
  /** Upper bound of its new tokens, for the token budget (the criteria's max tokens). */
  maxNewTokens: number;
  taps: boolean;
  /** Read from the row's prefill at the last prompt token (see GenerationRequest.probes). */
  probes?: LinearProbe[];
  /** Keep the row's cache and next-token logits when it ends other than by eos: it feeds its last token once more. */
  keepState: boolean;
  /** Token events; the delta is the detokenizer's final text (see IncrementalDetokenizer). */
  onToken?: (token: number, delta: string) => void;
}

export interface RowOutcome {
  tokens: number[];
  finishReason: FinishReason;
  /** The streamed text, cut after the stop string; undefined when the row was not detokenized as it went. */
  streamedText?: string;
  taps?: TapFrame[];
  /** z of each of the spec's probes. */
  probes?: number[];
  /** The gate's scale of a gated revision, 1 for a static one; undefined without revision. */
  revisionScale?: number;
  state?: { cache: KvCache; nextPosition: number; logits: Float32Array };
  prefillMs: number;
  decodeMs: number;
  /** Forward calls the row took part in after its start, and the largest batch among them. */
  steps: number;
  maxBatch: number;
  /** Rows prefilled in the same forward call as this one (0 for a row resumed from a cache). */
  prefillBatch: number;
}

interface Waiting extends WaitingCost {
  spec: RowSpec;
  since: number;
  resolve(outcome: RowOutcome): void;
  reject(err: Error): void;
  /** A row preempted from the batch: it rejoins with its own cache and feeds its pending token, as if never out. */
  parked?: { row: ActiveRow; cache: KvCache; nextPosition: number; feed?: RevisionFeed };
}

/** A row in the running batch; `active[i]` is the batch's row i. */
class ActiveRow {
  readonly tokens: number[] = [];
  readonly taps?: TapFrame[];
  readonly detokenizer?: IncrementalDetokenizer;
  /** It ended, and feeds its last token once more to complete its cache (keepState). */
  closing?: FinishReason;
  prefillMs = 0;
  prefillBatch = 0;
  probes?: number[];
  revisionScale?: number;
  joinedAt = 0;
  steps = 0;
  maxBatch = 0;

  constructor(
    readonly waiting: Waiting,
    decoder: TokenDecoder,
  ) {
    const spec = waiting.spec;
    if (spec.taps) this.taps = [];
    if (spec.onToken || spec.criteria.readsText) this.detokenizer = new IncrementalDetokenizer(decoder);
  }

  get spec(): RowSpec {
    return this.waiting.spec;
  }

  get lastToken(): number {
    return this.tokens[this.tokens.length - 1];
  }

  /** Takes one sampled token; returns why the row ends, if it does. */
  accept(token: number): FinishReason | undefined {
    this.tokens.push(token);
    const detok = this.detokenizer;
    const before = detok ? detok.text.length : 0;
    let delta = detok ? detok.push(token) : '';
    const reason = this.spec.criteria.check({ tokens: this.tokens, token, text: detok?.text ?? '', added: delta.length });
    if (reason === 'stop_string') delta = StopStringCriterion.cut(detok!.text, this.spec.criteria.stopStrings).slice(before);
    else if (reason && detok) delta += detok.flush();
    this.spec.onToken?.(token, delta);
    return reason;
  }

  outcome(finishReason: FinishReason, state?: RowOutcome['state']): RowOutcome {
    const detok = this.detokenizer;
    return {
      tokens: this.tokens,
      finishReason,
      streamedText: detok ? (finishReason === 'stop_string' ? StopStringCriterion.cut(detok.text, this.spec.criteria.stopStrings) : detok.text) : undefined,
      ...(this.taps ? { taps: this.taps } : {}),
      ...(this.probes ? { probes: this.probes } : {}),
      ...(this.revisionScale !== undefined ? { revisionScale: this.revisionScale } : {}),
      ...(state ? { state } : {}),
      prefillMs: this.prefillMs,
      decodeMs: performance.now() - this.joinedAt,
      steps: this.steps,
      maxBatch: this.maxBatch,
      prefillBatch: this.prefillBatch,
    };
  }
}

/** Scheduler-wide counters, for benchmarks and tests. */
export interface SchedulerStats {
  forwardCalls: number;
  decodeSteps: number;
  /** Sum of rows over decode steps: rowsStepped / decodeSteps is the mean batch. */
  rowsStepped: number;
  maxBatch: number;
  /** Decode steps that ran the plain decoder: no row of the batch revised, none reading taps. */
  plainSteps: number;
  /** Milliseconds spent admitting (embedding, vision encoder, prefill) and stepping: the engine's busy time. */
  busyMs: number;
  /** Rows taken out of a full batch for rows of a group that used it less (they rejoin later). */
  preemptions: number;
  /** Holds begun: times a heavier group's waiting rows were held back for a lighter group's (groupHoldMs). */
  holds: number;
}

/**
 * Iteration-level (continuous) batching, as vLLM and TGI schedule: rows of many requests share one running decode
 * batch; at each step boundary waiting rows are admitted under the budgets (prefilled together, or resumed from a
 * cache) and join, and rows that finished leave. Each row keeps its own revision, positions, sampling stream,
 * stop criteria and taps, so its tokens are the ones it would get alone. Work that needs the model to itself
 * (a tap read, a conversation's prefill) runs between steps through `exclusive`. Rows of several groups (tenants)
 * share a contended batch by usage: `shareByUsage` (order and preemption) and `unheld` (a lighter group's rows hold
 * the heavier groups' back).
 */
export class DecodeScheduler {
  readonly options: Required<SchedulerOptions>;
  readonly stats: SchedulerStats = { forwardCalls: 0, decodeSteps: 0, rowsStepped: 0, maxBatch: 0, plainSteps: 0, busyMs: 0, preemptions: 0, holds: 0 };
  private readonly waiting: Waiting[] = [];
  /** Group -> decayed row-steps (see SchedulerOptions.groupHalfLifeSteps); groups with rows or recent use only. */
  private readonly usage = new Map<string, number>();
  /** When the current hold began (see SchedulerOptions.groupHoldMs); undefined while rows of no lighter group are in. */
  private holdSince?: number;
  private readonly tasks: (() => Promise<void>)[] = [];
  private active: ActiveRow[] = [];
  private batch?: DecodeBatch;
  private looping = false;
  private wake?: () => void;

  constructor(
    private readonly model: VlmModel,
    private readonly decoder: TokenDecoder,
    private readonly embedder: PromptEmbedder,
    options: SchedulerOptions = {},
  ) {
    this.options = resolveSchedulerOptions(options);
  }

  /** Rows waiting and running now. */
  get load(): { waiting: number; running: number } {
    return { waiting: this.waiting.length, running: this.active.length };
  }

  submit(spec: RowSpec): Promise<RowOutcome> {
    return new Promise<RowOutcome>((resolve, reject) => {
      const prefillTokens = spec.start.kind === 'prompt' ? spec.start.prompt.length : 0;
      const held = spec.start.kind === 'prompt' ? spec.start.prompt.length : spec.start.cache.length;
      this.waiting.push({ spec, prefillTokens, reservedTokens: held + spec.maxNewTokens + 1, since: performance.now(), resolve, reject });
      this.kick();
    });
  }

  /** Runs `fn` between two steps, with the model to itself. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.tasks.push(() => fn().then(resolve, reject));
      this.kick();
    });
  }

  private kick(): void {
    if (this.looping) {
      this.wake?.();
      return;
    }
    this.looping = true;
    // Start on a microtask, not inside this submit: a call's rows (generate([...]), a best-of-N round) are all
    // submitted in the same tick, and must be admitted together rather than the first one alone.
    queueMicrotask(() => void this.loop());
  }

  private async loop(): Promise<void> {
    for (;;) {
      while (this.tasks.length) await this.tasks.shift()!();
      const shared = this.waiting.length > 0 && this.shareByUsage();
      const now = performance.now();
      const open = shared ? this.unheld(now) : this.waiting.length;
      const n = open
        ? admissibleRows(open < this.waiting.length ? this.waiting.slice(0, open) : this.waiting, this.running(), this.options, now - this.waiting[0].since)
        : 0;
      const t0 = performance.now();
      if (n > 0) await this.admit(this.waiting.splice(0, n));
      if (this.active.length) await this.step();
      this.stats.busyMs += performance.now() - t0;
      if (this.active.length || n > 0) continue;
      if (this.waiting.length) {
        await this.sleep(this.waiting[0].since + this.options.maxWaitMs - performance.now());
        continue;
      }
      if (this.tasks.length) continue;
      // No await between this check and the flag: a submit either saw `looping` and woke us, or starts a new loop.
      this.looping = false;
      return;
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms));
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }

  private running(): { rows: number; reservedTokens: number } {
    return { rows: this.active.length, reservedTokens: this.active.reduce((s, r) => s + r.waiting.reservedTokens, 0) };
  }

  private get vocab(): number {
    return this.model.pack.text.vocabSize;
  }

  /** Prefills the prompt rows as one call, resumes the cached ones, takes each one's first token, and joins them. */
  private async admit(entries: Waiting[]): Promise<void> {
    const parked = entries.filter((w) => w.parked);
    const rows = entries.filter((w) => !w.parked).map((w) => new ActiveRow(w, this.decoder));
    let group: DecodeBatch | undefined;
    let rejoining = false;
    const firstLogits: { logits: Float32Array; offset: number }[] = [];
    try {
      const prompts = rows.filter((r) => r.spec.start.kind === 'prompt');
      const resumed = rows.filter((r) => r.spec.start.kind === 'resume');
      const ordered = [...prompts, ...resumed];
      if (prompts.length) {
        const prepared = prompts.map((r) => (r.spec.start as Extract<RowStart, { kind: 'prompt' }>).prompt);
        const embeds = await this.embedder.embedAll(prepared);
        const t0 = performance.now();
        const { batch, out, seq, scales, unrevised } = await DecodeBatch.prefill(
          this.model,
          embeds,
          prepared.map((p) => p.length),
          prompts.map((r) => r.spec.feed),
        );
        this.stats.forwardCalls++;
        const ms = performance.now() - t0;
        prompts.forEach((r, g) => {
          r.prefillMs = ms;
          r.prefillBatch = prompts.length;
          if (r.taps) r.taps.push(tapFrame(this.model, out, g));
          if (r.spec.feed) r.revisionScale = scales[g] ?? 1;
          if (r.spec.probes?.length) {
            // The detector reads the decision point as the model had it before a gated revision moved it.
            const frame = unrevised[g] ?? tapFrame(this.model, out, g);
            r.probes = r.spec.probes.map((p) => readProbe(p, frame.layer, this.model.pack.text.hidden));
          }
          firstLogits.push({ logits: out.logits, offset: (g * seq + seq - 1) * this.vocab });
        });
        group = batch;
      }
      for (const r of resumed) {
        const start = r.spec.start as Extract<RowStart, { kind: 'resume' }>;
        const one = DecodeBatch.resume(this.model, start.cache, start.nextPosition, r.spec.feed, 1);
        if (group) group.join(one);
        else group = one;
        firstLogits.push({ logits: start.logits, offset: 0 });
      }
      const now = performance.now();
      const keep: number[] = [];
      ordered.forEach((r, i) => {
        r.joinedAt = now;
        const { logits, offset } = firstLogits[i];
        if (this.take(r, logits, offset)) keep.push(i);
      });
      group?.keep(keep);
      const joining = keep.map((i) => ordered[i]);
      // Preempted rows already hold their next token: they rejoin after the new rows, nothing sampled.
      rejoining = true;
      for (const w of parked) {
        const { row, cache, nextPosition, feed } = w.parked!;
        const one = DecodeBatch.resume(this.model, cache, nextPosition, feed, 1);
        if (group) group.join(one);
        else group = one;
        joining.push(row);
      }
      if (!joining.length) return;
      if (!this.batch) this.batch = group!;
      else this.batch.join(group!);
      this.active.push(...joining);
    } catch (err) {
      for (const r of rows) r.waiting.reject(err as Error);
      // A failed prefill is the new rows' failure: preempted rows not yet touched still hold their caches and wait again.
      if (rejoining) for (const w of parked) w.reject(err as Error);
      else this.waiting.unshift(...parked);
    }
  }

  private groupOf(spec: RowSpec): string {
    return spec.group ?? '';
  }

  private usageOf(spec: RowSpec): number {
    return this.usage.get(this.groupOf(spec)) ?? 0;
  }

  /**
   * Fair shares of a contended batch. Waiting rows are put in order of their group's usage (stable: first come, first
   * served within a group, and a preempted row keeps its place by its first arrival); then, for each waiting row that
   * no free slot would take, the most recently joined row of the running group that used the batch most gives up its
   * slot, when that group's usage exceeds the waiting row's group's by more than one full step (`maxBatchSize`
   * row-steps, so two groups of equal use do not trade rows every step). The preempted rows wait with their cache,
   * whose memory stays held (rows with a cache are at most the jobs the worker holds). One group, or none named:
   * nothing moves, no hold can be on, and it returns false (the batch is not shared).
   */
  private shareByUsage(): boolean {
    const first = this.groupOf(this.waiting[0].spec);
    const other = (spec: RowSpec) => this.groupOf(spec) !== first;
    if (!this.waiting.some((w) => other(w.spec)) && !this.active.some((r) => other(r.spec))) {
      this.holdSince = undefined;
      return false;
    }
    const order = this.waiting.map((w, i) => ({ w, i, u: this.usageOf(w.spec) }));
    order.sort((a, b) => a.u - b.u || a.i - b.i);
    this.waiting.splice(0, this.waiting.length, ...order.map((o) => o.w));
    const free = this.options.maxBatchSize - this.active.length;
    const victims: number[] = [];
    const margin = this.options.maxBatchSize;
    for (let c = Math.max(0, free); c < this.waiting.length; c++) {
      const wanted = this.usageOf(this.waiting[c].spec);
      let victim = -1;
      let most = -Infinity;
      this.active.forEach((r, i) => {
        if (r.closing || victims.includes(i)) return;
        const u = this.usageOf(r.spec);
        if (u > most || (u === most && r.joinedAt >= this.active[victim].joinedAt)) [victim, most] = [i, u];
      });
      if (victim < 0 || most <= wanted + margin) break;
      victims.push(victim);
    }
    if (victims.length) this.park(victims);
    return true;
  }

  /**
   * How many waiting rows of a batch several groups share, from the front of the list (in usage order after
   * shareByUsage), are not held back: all of them, except during a hold (SchedulerOptions.groupHoldMs), when rows of
   * groups whose usage exceeds the lightest running or waiting group's twice over and by more than `maxBatchSize`
   * row-steps wait, parked ones too (they would widen the batch). Two backlogs that share the batch use it about equally, so neither holds the other back while
   * slots are free.
   */
  private unheld(now: number): number {
    let light = Infinity;
    let heavy = -Infinity;
    for (const r of this.active) {
      const u = this.usageOf(r.spec);
      light = Math.min(light, u);
      heavy = Math.max(heavy, u);
    }
    for (const w of this.waiting) {
      const u = this.usageOf(w.spec);
      light = Math.min(light, u);
      heavy = Math.max(heavy, u);
    }
    const limit = 2 * light + this.options.maxBatchSize;
    if (heavy <= limit) {
      this.holdSince = undefined;
      return this.waiting.length;
    }
    if (this.holdSince === undefined) {
      this.holdSince = now;
      if (this.options.groupHoldMs > 0) this.stats.holds++;
    }
    if (now - this.holdSince >= this.options.groupHoldMs) return this.waiting.length;
    for (let i = 0; i < this.waiting.length; i++) if (this.usageOf(this.waiting[i].spec) > limit) return i;
    return this.waiting.length;
  }

  /** Takes rows `indices` out of the running batch into the waiting list, each with its own cache. */
  private park(indices: number[]): void {
    const batch = this.batch!;
    const parked = indices.map((i): Waiting => {
      const row = this.active[i];
      return { ...row.waiting, prefillTokens: 0, parked: { row, ...batch.takeRow(i) } };
    });
    const keep = this.active.flatMap((_, i) => (indices.includes(i) ? [] : [i]));
    batch.keep(keep);
    this.active = keep.map((i) => this.active[i]);
    if (!this.active.length) this.batch = undefined;
    this.stats.preemptions += indices.length;
    // Behind the rows they made room for (the waiting list is in usage order, and theirs is the highest).
    this.waiting.push(...parked);
  }

  /** One decode step of every running row counts against its group; all usage decays by the half-life. */
  private account(rows: ActiveRow[]): void {
    const decay = 2 ** (-1 / this.options.groupHalfLifeSteps);
    for (const [g, u] of this.usage) this.usage.set(g, u * decay);
    for (const r of rows) {
      const g = this.groupOf(r.spec);
      this.usage.set(g, (this.usage.get(g) ?? 0) + 1);
    }
    // Forget groups whose use has decayed away (no running row keeps them above this).
    for (const [g, u] of this.usage) if (u < 1e-3) this.usage.delete(g);
  }

  /** Samples the row's next token from `logits`; false when the row left (finished for good). */
  private take(row: ActiveRow, logits: Float32Array, offset: number): boolean {
    const token = pickToken(logits, offset, this.vocab, row.spec.sampling, row.spec.random);
    const reason = row.accept(token);
    if (!reason) return true;
    if (row.spec.keepState && reason !== 'eos') {
      row.closing = reason;
      return true;
    }
    row.waiting.resolve(row.outcome(reason));
    return false;
  }

  private async step(): Promise<void> {
    const batch = this.batch!;
    const rows = this.active;
    let out: ForwardOutput;
    try {
      out = await batch.step(
        rows.map((r) => r.lastToken),
        rows.some((r) => r.taps),
      );
    } catch (err) {
      // A failed forward call leaves the cache unknown: every row in it fails, and the batch starts over.
      this.active = [];
      this.batch = undefined;
      for (const r of rows) r.waiting.reject(err as Error);
      return;
    }
    this.stats.forwardCalls++;
    this.stats.decodeSteps++;
    if (out.plain) this.stats.plainSteps++;
    this.stats.rowsStepped += rows.length;
    this.stats.maxBatch = Math.max(this.stats.maxBatch, rows.length);
    this.account(rows);
    const keep: number[] = [];
    rows.forEach((r, i) => {
      r.steps++;
      r.maxBatch = Math.max(r.maxBatch, rows.length);
      if (r.closing) {
        const { cache, nextPosition } = batch.takeRow(i);
        r.waiting.resolve(r.outcome(r.closing, { cache, nextPosition, logits: out.logits.slice(i * this.vocab, (i + 1) * this.vocab) }));
        return;
      }
      if (r.taps) r.taps.push(tapFrame(this.model, out, i));
      if (this.take(r, out.logits, i * this.vocab)) keep.push(i);
    });
    batch.keep(keep);
    this.active = keep.map((i) => rows[i]);
    if (!this.active.length) this.batch = undefined;
  }
}
