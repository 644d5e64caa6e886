import 'reflect-metadata';
import { startWorkerRole } from '@libs/worker';
import { GeneratorModule } from './generator.module';

startWorkerRole('generator', GeneratorModule.register());
