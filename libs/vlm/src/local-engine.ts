import { GenerationRuntime } from './generation';
import type { SchedulerOptions, SchedulerStats } from './scheduler';
import type { SessionOptions } from './sessions';
import { VlmModel, type PlainDecoderChoice } from './vlm-model';
import { VlmProcessor } from './vlm-processor';
import type {
  AlignmentStats,
  Candidate,
  CandidateOptions,
  ConversationRequest,
  GenerationRequest,
  GenerationResult,
  ModelInfo,
  TapFrame,
  TapRequest,
  TokenCallback,
  VlmEngine,
} from './types';

export interface EngineOptions extends SessionOptions {
  packDir: string;
  /** Use the revisable decoder when the pack has one (default true). */
  revisable?: boolean;
  /**
   * Also load the pack's plain decoder, for decode steps that revise no row and read no taps (VlmModel.open).
   * @defaultValue 'auto'
   */
  plainDecoder?: PlainDecoderChoice;
  /** Budgets of the continuous-batching scheduler; unset fields get DEFAULT_SCHEDULER_OPTIONS. */
  scheduler?: SchedulerOptions;
}

/**
 * The engine on the calling thread. Its ONNX calls block this thread while they run, so services use it
 * behind `WorkerVlmEngine`; benchmarks and the worker thread itself use it directly.
 */
export class LocalVlmEngine implements VlmEngine {
  private constructor(
    private readonly model: VlmModel,
    private readonly generator: GenerationRuntime,
    private readonly modelInfo: ModelInfo,
  ) {}

  static async open(options: EngineOptions): Promise<LocalVlmEngine> {
    const model = await VlmModel.open(options.packDir, options);
    const processor = new VlmProcessor(model.pack);
    const { layers, hidden, heads, headDim, vocabSize } = model.pack.text;
    const info: ModelInfo = {
      name: model.pack.name,
      fingerprint: model.pack.fingerprint,
      layers,
      hidden,
      heads,
      headDim,
      vocabSize,
      executionProvider: model.executionProvider,
      revisable: model.revisable,
      decoder: { ioType: model.decoderIo.embeds, groupQueryAttention: model.decoderIo.groupQueryAttention },
    };
    return new LocalVlmEngine(model, new GenerationRuntime(model, processor, options.scheduler), info);
  }

  info(): ModelInfo {
    return this.modelInfo;
  }

  generate(requests: GenerationRequest[], onToken?: TokenCallback): Promise<GenerationResult[]> {
    return this.generator.generate(requests, onToken);
  }

  readTaps(requests: TapRequest[]): Promise<TapFrame[]> {
    return this.generator.readTaps(requests);
  }

  open(request: ConversationRequest): Promise<number> {
    return this.generator.open(request);
  }

  sampleCandidates(handle: number, options: CandidateOptions): Promise<Candidate[]> {
    return this.generator.sampleCandidates(handle, options);
  }

  accept(handle: number, candidateIndex: number): Promise<void> {
    return this.generator.accept(handle, candidateIndex);
  }

  text(handle: number): Promise<string> {
    return this.generator.text(handle);
  }

  stats(handle: number): Promise<AlignmentStats> {
    return this.generator.conversationStats(handle);
  }

  release(handle: number): Promise<void> {
    return this.generator.release(handle);
  }

  /** Counters of the scheduler (forward calls, decode steps, rows stepped, largest batch). */
  schedulerStats(): SchedulerStats {
    return this.generator.stats;
  }

  close(): Promise<void> {
    return this.model.release();
  }
}
