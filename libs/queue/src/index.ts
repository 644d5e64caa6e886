export * from './config';
export * from './keys';
export * from './routing';
export * from './failures';
export * from './stage-queues.module';
export * from './producer-connection';
export * from './backlog';
export * from './local-redis';
