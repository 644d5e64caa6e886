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
  /** Text the assistant turn starts with; generation continues from it (ETA's shallow alignment). */
  answerPrefix?: string;
  /** Default: the pack's generation_config max_new_tokens, else 64. */
  maxNewTokens?: number;
  sampling?: SamplingOptions;
  /** Generation stops after any of these strings; the returned text ends with it. */
  stopStrings?: string[];
  /** Extra stop token ids beside the pack's eos_token_id. */
  stopTokenIds?: number[];
  revision?: RevisionFeed;
  /** Return the activation taps of every forward call's last position. */
  taps?: boolean;
}

/** Activations at the last position of one forward call, read through the decoder's tap outputs. */
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
  /** Generated token ids (the answer prefix's tokens are not included). */
  tokens: number[];
  promptTokens: number;
  finishReason: FinishReason;
  /** One frame per forward call (prefill first), when `taps` was asked for. */
  taps?: TapFrame[];
  timings: { prefillMs: number; decodeMs: number };
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
}

/** Streaming callback: one call per generated token of request `index` in the batch. */
export type TokenCallback = (index: number, tokenId: number, textDelta: string) => void;

/** A VLM that answers batches of requests. Implemented in-thread and behind a worker thread. */
export interface VlmEngine {
  info(): ModelInfo;
  generate(requests: GenerationRequest[], onToken?: TokenCallback): Promise<GenerationResult[]>;
  close(): Promise<void>;
}
