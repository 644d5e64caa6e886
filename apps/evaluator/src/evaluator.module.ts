import { Inject, Injectable, Module, type DynamicModule, type OnApplicationShutdown } from '@nestjs/common';
import { StageQueuesModule } from '@libs/queue';
import { openSafetyEvaluator } from '@libs/safety';
import { StorageModule } from '@libs/storage';
import { ANSWER_EVALUATOR, type AnswerEvaluator } from './answer-evaluator';
import { EVALUATOR_CONFIG, evaluatorConfigFromEnv, type EvaluatorConfig } from './config';
import { EvaluateProcessor } from './evaluate.processor';
import { EvaluationService } from './evaluation.service';

@Injectable()
class AnswerEvaluatorCloser implements OnApplicationShutdown {
  constructor(@Inject(ANSWER_EVALUATOR) private readonly evaluator: AnswerEvaluator) {}
  async onApplicationShutdown(): Promise<void> {
    await this.evaluator.close();
  }
}

/** The evaluator role: consumes `evaluate`, finishes unflagged verdicts, produces `align` for flagged ones. */
@Module({})
export class EvaluatorModule {
  static register(env: NodeJS.ProcessEnv = process.env): DynamicModule {
    return {
      module: EvaluatorModule,
      imports: [StageQueuesModule.register(['evaluate', 'align'], env), StorageModule.register(env)],
      providers: [
        { provide: EVALUATOR_CONFIG, useValue: evaluatorConfigFromEnv(env) },
        { provide: ANSWER_EVALUATOR, inject: [EVALUATOR_CONFIG], useFactory: (c: EvaluatorConfig): Promise<AnswerEvaluator> => openSafetyEvaluator(c) },
        AnswerEvaluatorCloser,
        EvaluationService,
        EvaluateProcessor,
      ],
    };
  }
}
