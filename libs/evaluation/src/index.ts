export * from './dataset';
export * from './judge';
export * from './metrics';
export * from './report';
export * from './plot';
export * from './detector-metrics';
