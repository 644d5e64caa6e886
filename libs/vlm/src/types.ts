/**
 * Public types of the VLM runtime. Apps and other libs depend on these, not on the engine internals.
 * Shapes follow the model pack: `layers`, `hidden`, `heads`, `headDim` come from the pack's config.json.
 */

/** Which positions of the sequence receive a revision vector (DESIGN.md section 6). */
export type RevisionPositions =
  /** The last position of every forward call: the last prompt token at prefill, then each generated token (ITI/HSI). */
  | 'last'
  /** Every prompt position and every generated token. */
  | 'all'
  /** Generated tokens only; the prompt is left untouched. */
  | 'generated';

/**
 * Steering vectors for one request, already scaled (alpha * sigma * direction) and laid out densely:
 * `layer` is [layers * hidden] (residual stream after each layer), `head` is [layers * heads * headDim]
 * (o_proj input, per head slice). Zeros where a layer or head is not revised. Either may be omitted.
 */
export interface RevisionFeed {
  layer?: Float32Array;
  head?: Float32Array;
  positions: RevisionPositions;
  /** Input-adaptive revision: the row's feed is scaled by the gate read from the row's own unrevised prefill. */
  gate?: RevisionGate;
}

/**
 * A linear read-out of one layer's residual stream at the last prompt token (the decision point):
 * `z = weights · (tap[layer] - center) + bias`. A logistic probe's logit when fitted as one (the hidden-state
 * detector); the score a revision gate thresholds.
 */
export interface LinearProbe {
  layer: number;
  /** [hidden] */
  weights: Float32Array;
  bias: number;
  /** [hidden]; zeros when absent. */
  center?: Float32Array;
}

/**
 * Input-adaptive revision (ASTRA / AdaSteer style): the feed is multiplied, per row, by
 * `clamp((z - low) / (high - low), 0, 1)` where z is the probe on that row's prefill taps read WITHOUT the
 * revision. Rows whose probe reads below `low` are not revised at all, rows above `high` get the full feed.
 */
export interface RevisionGate {
  probe: LinearProbe;
  low: number;
  high: number;
}

/** Sampling settings; greedy decoding when `temperature` is 0 or absent. */
export interface SamplingOptions {
  temperature?: number;
  topK?: number;
  topP?: number;
  /** Seed of the request's own random stream, so a request samples the same tokens in any batch. */
  seed?: number;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface GenerationRequest {
  /** The user's question. */
  prompt: string;
  /** Encoded image (PNG, JPEG, WebP); decoded and preprocessed by the pack's image processor. */
  image?: Uint8Array;
  /**
   * Text the assistant turn starts with, appended verbatim after the chat template's generation prompt;
   * generation continues from it (ETA's shallow alignment).
   */
  answerPrefix?: string;
  /** Default: the pack's generation_config max_new_tokens, else 64. */
  maxNewTokens?: number;
  sampling?: SamplingOptions;
  /** Generation stops after any of these strings; the returned text ends with it. */
  stopStrings?: string[];
  /** Extra stop token ids beside the pack's eos_token_id. */
  stopTokenIds?: number[];
  /** Keep generating past eos until `maxNewTokens` (reference runs and benchmarks of a fixed length). */
  ignoreEos?: boolean;
  revision?: RevisionFeed;
  /** Return the activation taps of every forward call's last position. */
  taps?: boolean;
  /**
   * Linear probes read from this row's prefill taps at the last prompt token (no extra forward pass); their
   * values come back in `GenerationResult.probes`. Read from the unrevised prefill when the row's revision is
   * gated, else from the prefill as it ran (after a static revision).
   */
  probes?: LinearProbe[];
  /**
   * Who the request is run for (a tenant): when the engine's batch is full, rows of the group that used it least go
   * first and may preempt rows of the group that used it most (SchedulerOptions.groupHalfLifeSteps). Without one,
   * requests are served first come, first served.
   */
  group?: string;
}

/** A best-of-N conversation's start (ConversationEngine.open): the prompt, prefix, revision and group of its rows. */
export type ConversationRequest = Pick<GenerationRequest, 'prompt' | 'image' | 'answerPrefix' | 'revision' | 'group'>;

/**
 * Activations at the last position of one forward call, read through the decoder's tap outputs. They are
 * read after the revision is added, so a revision of alpha*sigma*theta moves the tap by exactly that.
 */
export interface TapFrame {
  /** [layers * hidden]: residual stream after each layer. */
  layer: Float32Array;
  /** [layers * heads * headDim]: o_proj input of each layer. */
  head: Float32Array;
}

export type FinishReason = 'eos' | 'stop_string' | 'stop_token' | 'length';

export interface GenerationResult {
  /** Generated text, without the prompt; includes `answerPrefix` when one was given. */
  text: string;
  /** Generated token ids, including a final eos/stop token (the answer prefix's tokens are not included). */
  tokens: number[];
  promptTokens: number;
  finishReason: FinishReason;
  /** One frame per forward call (prefill first), when `taps` was asked for. */
  taps?: TapFrame[];
  /** z of each requested probe, in request order. */
  probes?: number[];
  /** The scale the row's gated revision got (1 for a static revision); absent without a revision. */
  revisionScale?: number;
  timings: { prefillMs: number; decodeMs: number };
  /** Rows in the prefill call this request's row was in, and in the largest decode step it joined (tracing attributes). */
  batch?: { prefill: number; maxDecode: number };
}

export interface ModelInfo {
  name: string;
  /** sha256 of the decoder graph the revision vectors were computed against. */
  fingerprint: string;
  layers: number;
  hidden: number;
  heads: number;
  headDim: number;
  vocabSize: number;
  /** Execution provider the sessions got ('cpu', 'cuda'). */
  executionProvider: string;
  /** Whether the decoder carries revision inputs and tap outputs. */
  revisable: boolean;
  /** How the runtime feeds the decoder, read from the session's declared I/O and the graph. */
  decoder: DecoderFeedInfo;
}

export interface DecoderFeedInfo {
  /** float16 where the decoder declares float16 inputs_embeds and KV cache (optimum --fp16): converted at the session boundary. */
  ioType: 'float32' | 'float16';
  /**
   * The decoder attends through GroupQueryAttention (onnxruntime-genai): batched rows are packed from cache column 0
   * and right-padded, since GQA reads positions and the valid length from seqlens_k; prompts of different lengths
   * then prefill in one call per length.
   */
  groupQueryAttention: boolean;
}

/** Streaming callback: one call per generated token of request `index` in the batch. */
export type TokenCallback = (index: number, tokenId: number, textDelta: string) => void;

/**
 * A VLM that answers batches of requests. Implemented in-thread and behind a worker thread.
 * Created by `openVlmEngine({ packDir, thread: 'worker' | 'inline' })` from '@libs/vlm'.
 */
export interface VlmEngine extends ConversationEngine {
  info(): ModelInfo;
  generate(requests: GenerationRequest[], onToken?: TokenCallback): Promise<GenerationResult[]>;
  /** Teacher-forced forward passes, batched; one frame per request (its last position). */
  readTaps(requests: TapRequest[]): Promise<TapFrame[]>;
  close(): Promise<void>;
}

/** One teacher-forced forward pass over prompt (+ image) + response, for calibration. */
export interface TapRequest {
  prompt: string;
  image?: Uint8Array;
  /** Assistant text appended after the generation prompt; taps are read at its last token. */
  response?: string;
  revision?: RevisionFeed;
}

/**
 * Stepwise generation for sentence-level best-of-N (ETA deep alignment). The conversation's prompt and prefix
 * are prefilled once; each `sampleCandidates` call forks that KV cache into `n` rows generated as one batch,
 * and `accept` makes the chosen row's cache the conversation's. Handles live in the engine until `release`.
 */
export interface CandidateOptions {
  n: number;
  topK: number;
  temperature: number;
  /** A candidate ends at any of these tokens (sentence ends), at eos, or after `maxTokens`. */
  endTokenIds: number[];
  maxTokens: number;
  seed: number;
}

export interface Candidate {
  tokens: number[];
  text: string;
  /** The candidate ended with eos: the answer is complete if it is chosen. */
  eos: boolean;
}

export interface AlignmentStats {
  /** Tokens run through the decoder as prompt (prefill) rather than one-by-one decode; shows the KV reuse. */
  prefillTokens: number;
  decodeSteps: number;
  /** Largest batch of one decode step (n when candidates are batched). */
  maxBatch: number;
}

export interface ConversationEngine {
  open(request: ConversationRequest): Promise<number>;
  sampleCandidates(handle: number, options: CandidateOptions): Promise<Candidate[]>;
  accept(handle: number, candidateIndex: number): Promise<void>;
  /** Text generated so far (prefix included). */
  text(handle: number): Promise<string>;
  stats(handle: number): Promise<AlignmentStats>;
  release(handle: number): Promise<void>;
}

/** CLIP-style dual encoder: unnormalized embeddings; cosine is taken by the caller. */
export interface ClipEmbedder {
  embedImages(images: Uint8Array[]): Promise<Float32Array[]>;
  embedTexts(texts: string[]): Promise<Float32Array[]>;
  close(): Promise<void>;
}

/** Sequence classifier / reward model over chat-formatted conversations (the pack's chat template). */
export interface ConversationClassifier {
  /** Label names in logit order, from config.json id2label. */
  readonly labels: string[];
  classify(conversations: ChatMessage[][]): Promise<Float32Array[]>;
  close(): Promise<void>;
}
