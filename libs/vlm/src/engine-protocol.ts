/** Messages between `WorkerVlmEngine` (main thread) and the engine thread. Plain data: structured clone. */
export type EngineMethod = 'generate' | 'readTaps' | 'open' | 'sampleCandidates' | 'accept' | 'text' | 'stats' | 'release' | 'schedulerStats' | 'close';

export interface EngineCall {
  id: number;
  method: EngineMethod;
  args: unknown[];
  /** Whether the caller wants token events for this call. */
  stream?: boolean;
}

export type EngineReply =
  | { id: number; result: unknown }
  | { id: number; error: { name: string; message: string; code?: string; details?: Record<string, unknown> } }
  | { id: number; token: [index: number, tokenId: number, delta: string] };

export type EngineStartup = { ready: import('./types').ModelInfo } | { startupError: { message: string } };
