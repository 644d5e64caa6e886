export * from './blob-store';
export * from './verdict-store';
export * from './storage.module';
export * from './stage-worker';
export * from './worker-role';
