export * from './directions';
export * from './probe';
export * from './layout';
export * from './selection';
export * from './sample-strategies';
export * from './artifact';
export * from './calibration';
export * from './profiles';
