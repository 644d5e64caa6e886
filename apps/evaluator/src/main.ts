import 'reflect-metadata';
// First: validates the environment before any import reads it.
import './env-check';
import { startWorkerRole } from '@libs/worker';
import { EvaluatorModule } from './evaluator.module';

startWorkerRole('evaluator', EvaluatorModule.register());
