/** What a worker role runs on: the BullMQ stage host that records verdicts, its metrics, probes and SIGTERM drain. */
export * from './stage-worker';
export * from './worker-role';
