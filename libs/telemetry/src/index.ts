export * from './config';
export * from './tracing';
export * from './spans';
export * from './http';
