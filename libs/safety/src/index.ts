export * from './config';
export * from './thresholds';
export * from './eta-evaluator';
export * from './best-of-n-aligner';
export * from './sentence-ends';
export * from './safety-evaluator';
export * from './call-coalescer';
