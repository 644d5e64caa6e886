import { Inject, Injectable, Module, type DynamicModule, type OnApplicationShutdown } from '@nestjs/common';
import { StageQueuesModule } from '@libs/queue';
import { StorageModule } from '@libs/storage';
import type { VlmEngine } from '@libs/vlm';
import { revisionProfilesProvider, VLM_ENGINE, VlmEngineCloser, vlmEngineProvider } from '@libs/worker';
import { AlignProcessor } from './align.processor';
import { ANSWER_ALIGNER, type AnswerAligner } from './answer-aligner';
import { ALIGNER_CONFIG, alignerConfigFromEnv, type AlignerConfig } from './config';
import { openSafetyAligner } from './safety-aligner.adapter';

@Injectable()
class AnswerAlignerCloser implements OnApplicationShutdown {
  constructor(@Inject(ANSWER_ALIGNER) private readonly aligner: AnswerAligner) {}
  async onApplicationShutdown(): Promise<void> {
    await this.aligner.close();
  }
}

/** The aligner role: consumes `align` and finishes the verdict as aligned or blocked. */
@Module({})
export class AlignerModule {
  static register(env: NodeJS.ProcessEnv = process.env): DynamicModule {
    return {
      module: AlignerModule,
      imports: [StageQueuesModule.register(['align'], env), StorageModule.register(env)],
      providers: [
        { provide: ALIGNER_CONFIG, useValue: alignerConfigFromEnv(env) },
        vlmEngineProvider(ALIGNER_CONFIG, (c: AlignerConfig) => c),
        VlmEngineCloser,
        {
          provide: ANSWER_ALIGNER,
          inject: [VLM_ENGINE, ALIGNER_CONFIG],
          useFactory: (engine: VlmEngine, config: AlignerConfig) => openSafetyAligner(engine, config),
        },
        AnswerAlignerCloser,
        revisionProfilesProvider(env),
        AlignProcessor,
      ],
    };
  }
}
