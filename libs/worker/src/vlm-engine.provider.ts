import { Inject, Injectable, Logger, type OnApplicationShutdown, type Provider } from '@nestjs/common';
import { openVlmEngine, type PlainDecoderChoice, type SchedulerOptions, type VlmEngine } from '@libs/vlm';

export const VLM_ENGINE = Symbol('VLM_ENGINE');

export interface VlmEngineSettings {
  packDir: string;
  executionProviders: string[];
  /** Opening fails when the sessions land on another provider (REQUIRE_EXECUTION_PROVIDER): the worker never starts. */
  requireExecutionProvider?: string;
  intraOpNumThreads?: number;
  /** Whether the sessions' threads spin between runs (ORT_SPIN_WAIT); undefined: onnxruntime's default. */
  spinWait?: boolean;
  /** VLM_PLAIN_DECODER; undefined: libs/vlm's default ('auto'). */
  plainDecoder?: PlainDecoderChoice;
  /** Budgets of the engine's continuous-batching scheduler (VLM_MAX_BATCH_SIZE, ...); unset: libs/vlm's defaults. */
  scheduler?: SchedulerOptions;
}

/**
 * One engine per process, opened before the worker takes jobs and closed only after it drained: sessions are
 * expensive to create and onnxruntime leaks host memory when they are recreated (microsoft/onnxruntime#25325).
 */
export function vlmEngineProvider(settingsToken: symbol, pick: (config: never) => VlmEngineSettings): Provider {
  return {
    provide: VLM_ENGINE,
    inject: [settingsToken],
    useFactory: async (config: never): Promise<VlmEngine> => {
      const settings = pick(config);
      const logger = new Logger('VlmEngine');
      const engine = await openVlmEngine({
        packDir: settings.packDir,
        thread: 'worker',
        executionProviders: settings.executionProviders,
        requireExecutionProvider: settings.requireExecutionProvider,
        intraOpNumThreads: settings.intraOpNumThreads,
        spinWait: settings.spinWait,
        plainDecoder: settings.plainDecoder,
        scheduler: settings.scheduler,
      });
      const info = engine.info();
      logger.log(
        `loaded ${info.name} (${info.fingerprint.slice(0, 12)}) from ${settings.packDir} on execution provider "${info.executionProvider}"` +
          ` (asked for ${settings.executionProviders.join(', ')}); revisable decoder: ${info.revisable}`,
      );
      return engine;
    },
  };
}

@Injectable()
export class VlmEngineCloser implements OnApplicationShutdown {
  constructor(@Inject(VLM_ENGINE) private readonly engine: VlmEngine) {}
  async onApplicationShutdown(): Promise<void> {
    await this.engine.close();
  }
}
