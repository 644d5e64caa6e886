import 'reflect-metadata';
import { startWorkerRole } from '@libs/worker';
import { EvaluatorModule } from './evaluator.module';

startWorkerRole('evaluator', EvaluatorModule.register());
