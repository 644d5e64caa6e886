import 'reflect-metadata';
import { startWorkerRole } from '@libs/storage';
import { AlignerModule } from './aligner.module';

startWorkerRole('aligner', AlignerModule.register());
