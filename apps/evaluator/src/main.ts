import 'reflect-metadata';
import { startWorkerRole } from '@libs/storage';
import { EvaluatorModule } from './evaluator.module';

startWorkerRole('evaluator', EvaluatorModule.register());
