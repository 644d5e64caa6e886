import 'reflect-metadata';
// First: validates the environment before any import reads it.
import './env-check';
import { startWorkerRole } from '@libs/worker';
import { NotifierModule } from './notifier.module';

// Probes and metrics on HEALTH_PORT and the SIGTERM drain of the other worker roles: the relay stops reading,
// running deliveries finish, then the connections close.
startWorkerRole('notifier', NotifierModule.register());
