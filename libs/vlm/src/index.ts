export * from './types';
export { loadVlmPack, textModelConfig, sha256File, PackError, type VlmPack, type TextModelConfig } from './pack';
export { ChatTokenizer } from './chat-tokenizer';
export { Idefics3ImageProcessor, ClipImageProcessor, scaleLongestEdge } from './image-processor';
export { VlmProcessor } from './vlm-processor';
export { VlmModel, PLAIN_DECODER_AUTO_MAX_BYTES, type PlainDecoderChoice } from './vlm-model';
export { LocalVlmEngine, type EngineOptions } from './local-engine';
export { WorkerVlmEngine, EngineError } from './worker-engine';
export { ClipModel, cosine } from './clip';
export { SequenceClassifier, SHARED_PREFIX_MIN_TOKENS, type ClassifierStats } from './classifier';
export { sharedPrefixGroups, type SharedPrefixGroup } from './shared-prefix';
export { seededRandom, pickToken, argmax } from './sampler';
export { GenerationRuntime } from './generation';
export {
  DecodeScheduler,
  DEFAULT_SCHEDULER_OPTIONS,
  resolveSchedulerOptions,
  admissibleRows,
  type SchedulerOptions,
  type SchedulerStats,
  type WaitingCost,
} from './scheduler';
export { StoppingCriteria, TokenSetCriterion, StopStringCriterion, MaxTokensCriterion, type StoppingCriterion, type RowProgress } from './stopping-criteria';
export { readProbe, gateScale } from './linear-probe';
export { IncrementalDetokenizer, type TokenDecoder } from './detokenizer';
export { EXECUTION_ENV, ExecutionProviderMismatchError, executionFromEnv, type SessionOptions } from './sessions';
export { cpuAllotment, cpusFromCgroupV1, cpusFromCgroupV2, type CpuSources } from './cpu-allotment';

import { LocalVlmEngine, type EngineOptions } from './local-engine';
import { WorkerVlmEngine } from './worker-engine';
import { ClipModel } from './clip';
import { SequenceClassifier } from './classifier';
import type { SessionOptions } from './sessions';
import type { ClipEmbedder, ConversationClassifier, VlmEngine } from './types';

/** Opens a VLM engine; `thread: 'worker'` (default) keeps onnxruntime's blocking calls off the caller's event loop. */
export async function openVlmEngine(options: EngineOptions & { thread?: 'worker' | 'inline' }): Promise<VlmEngine> {
  const { thread = 'worker', ...rest } = options;
  return thread === 'inline' ? LocalVlmEngine.open(rest) : WorkerVlmEngine.open(rest);
}

// The scoring models run in bursts beside a busy decoder: their threads sleep between calls instead of spinning.
export function openClip(packDir: string, options: SessionOptions = {}): Promise<ClipEmbedder> {
  return ClipModel.open(packDir, { ...options, spinWait: options.spinWait ?? false });
}

export function openClassifier(packDir: string, options: SessionOptions = {}): Promise<ConversationClassifier> {
  return SequenceClassifier.open(packDir, { ...options, spinWait: options.spinWait ?? false });
}
