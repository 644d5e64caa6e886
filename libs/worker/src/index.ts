/**
 * What a worker role runs on: the BullMQ stage host that records verdicts, its metrics, probes and SIGTERM drain;
 * the VLM engine provider and revision profiles shared by the generator and the aligner.
 */
export * from './stage-worker';
export * from './worker-role';
export * from './job-image';
export * from './vlm-settings';
export * from './worker-options';
export * from './vlm-engine.provider';
export * from './revision-profiles';
export * from './tenant-share';
