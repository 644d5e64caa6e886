export * from './queues';
export * from './errors';
export * from './job';
export * from './verdict';
export * from './limits';
export * from './api';
export * from './openapi';
