export * from './blob-store';
export * from './verdict-store';
export * from './storage.module';
