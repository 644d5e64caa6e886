import { Module, type DynamicModule } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { StageQueuesModule } from '@libs/queue';
import { StorageModule } from '@libs/storage';
import { WebhooksModule } from '@libs/webhooks';
import { ApiKeyGuard } from './auth';
import { INTAKE_CONFIG, intakeConfigFromEnv, type IntakeConfig } from './config';
import { IntakeService } from './intake.service';
import { JobsController } from './jobs.controller';
import { IntakeMetrics } from './metrics';
import { OpsController } from './ops.controller';
import { DeadLetterController, WebhooksController } from './webhooks.controller';

@Module({})
export class IntakeModule {
  static register(env: NodeJS.ProcessEnv = process.env, config: IntakeConfig = intakeConfigFromEnv(env)): DynamicModule {
    return {
      module: IntakeModule,
      // The API produces to every stage queue (evaluate-only jobs enter at evaluate) and shows them all on the dashboard.
      // Producer connections (fail fast, never replay a command) and the blob collector (BLOB_GC_INTERVAL_SECONDS).
      imports: [
        StageQueuesModule.register(['generate', 'evaluate', 'align'], env, { producer: true }),
        StorageModule.register(env, { producer: true, collectBlobs: true }),
        // Endpoint registration, callback URL checks and the dead-letter admin; the notifier role delivers.
        WebhooksModule.forIntake(env),
      ],
      controllers: [JobsController, OpsController, WebhooksController, DeadLetterController],
      providers: [{ provide: INTAKE_CONFIG, useValue: config }, IntakeService, IntakeMetrics, { provide: APP_GUARD, useClass: ApiKeyGuard }],
    };
  }
}
