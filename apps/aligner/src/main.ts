import 'reflect-metadata';
// First: validates the environment before any import reads it.
import './env-check';
import { startWorkerRole } from '@libs/worker';
import { AlignerModule } from './aligner.module';

startWorkerRole('aligner', AlignerModule.register());
