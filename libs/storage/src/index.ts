export * from './blob-store';
export * from './blob-gc';
export * from './verdict-store';
export * from './storage.module';
