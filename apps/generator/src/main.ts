import 'reflect-metadata';
import { startWorkerRole } from '@libs/storage';
import { GeneratorModule } from './generator.module';

startWorkerRole('generator', GeneratorModule.register());
