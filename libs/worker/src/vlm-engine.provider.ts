import { Inject, Injectable, Logger, type OnApplicationShutdown, type Provider } from '@nestjs/common';
import { openVlmEngine, type EngineOptions, type PlainDecoderChoice, type SchedulerOptions, type VlmEngine } from '@libs/vlm';

export const VLM_ENGINE = Symbol('VLM_ENGINE');

/**
 * A worker role's engine does not spin unless ORT_SPIN_WAIT says so. Its thread shares the pod's CPUs with the
 * event loop that feeds it (BullMQ, verdict writes, image loads), and onnxruntime's pool threads spinning after every
 * decode step took those CPUs: 200 image jobs through every role on 2 cores ran at 0.31x the direct runtime's
 * batch-32 throughput with spinning and 0.71x without (`ORT_SPIN_WAIT=true|false npm run bench -- pipeline --only
 * batching`). An engine alone on its cores loses 8% (batch 1) to 22% (batch 32) without spinning: set
 * ORT_SPIN_WAIT=true where nothing else runs beside it. On a GPU provider the CPU threads hardly run.
 */
export const WORKER_ENGINE_SPIN_WAIT = false;

export interface VlmEngineSettings {
  packDir: string;
  executionProviders: string[];
  /** Opening fails when the sessions land on another provider (REQUIRE_EXECUTION_PROVIDER): the worker never starts. */
  requireExecutionProvider?: string;
  intraOpNumThreads?: number;
  /**
   * Whether the sessions' threads spin between runs (ORT_SPIN_WAIT).
   * @defaultValue false (WORKER_ENGINE_SPIN_WAIT)
   */
  spinWait?: boolean;
  /** VLM_PLAIN_DECODER; undefined: libs/vlm's default ('auto'). */
  plainDecoder?: PlainDecoderChoice;
  /** Budgets of the engine's continuous-batching scheduler (VLM_MAX_BATCH_SIZE, ...); unset: libs/vlm's defaults. */
  scheduler?: SchedulerOptions;
}

/** What a worker role opens its engine with: the settings, their defaults filled in here. */
export function workerEngineOptions(settings: VlmEngineSettings): EngineOptions {
  return {
    packDir: settings.packDir,
    executionProviders: settings.executionProviders,
    requireExecutionProvider: settings.requireExecutionProvider,
    intraOpNumThreads: settings.intraOpNumThreads,
    spinWait: settings.spinWait ?? WORKER_ENGINE_SPIN_WAIT,
    plainDecoder: settings.plainDecoder,
    scheduler: settings.scheduler,
  };
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
      const engine = await openVlmEngine({ ...workerEngineOptions(settings), thread: 'worker' });
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
