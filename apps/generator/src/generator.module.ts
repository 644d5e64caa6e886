import { Module, type DynamicModule } from '@nestjs/common';
import { StageQueuesModule } from '@libs/queue';
import { StorageModule } from '@libs/storage';
import { GENERATOR_CONFIG, generatorConfigFromEnv, type GeneratorConfig } from './config';
import { GenerateProcessor } from './generate.processor';
import { GenerationService } from './generation.service';
import { detectorProvider } from './detector.provider';
import { revisionProfilesProvider, VlmEngineCloser, vlmEngineProvider } from '@libs/worker';

/** The generator role: consumes `generate`, produces `evaluate`. */
@Module({})
export class GeneratorModule {
  static register(env: NodeJS.ProcessEnv = process.env): DynamicModule {
    return {
      module: GeneratorModule,
      imports: [StageQueuesModule.register(['generate', 'evaluate'], env), StorageModule.register(env)],
      providers: [
        { provide: GENERATOR_CONFIG, useValue: generatorConfigFromEnv(env) },
        vlmEngineProvider(GENERATOR_CONFIG, (c: GeneratorConfig) => c),
        VlmEngineCloser,
        revisionProfilesProvider(env),
        detectorProvider,
        GenerationService,
        GenerateProcessor,
      ],
    };
  }
}
