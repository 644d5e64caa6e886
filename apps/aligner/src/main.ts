import 'reflect-metadata';
import { startWorkerRole } from '@libs/worker';
import { AlignerModule } from './aligner.module';

startWorkerRole('aligner', AlignerModule.register());
