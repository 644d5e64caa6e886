import 'reflect-metadata';
// First: validates the environment before any import reads it.
import './env-check';
import { startWorkerRole } from '@libs/worker';
import { GeneratorModule } from './generator.module';

startWorkerRole('generator', GeneratorModule.register());
