/**
 * Queue names and the hash-tag prefix shared by every stage. One hash tag keeps all stage queues, the verdict
 * keys and the idempotency keys in one Redis Cluster slot, so multi-key scripts never hit CROSSSLOT.
 */
export const STAGES = ['generate', 'evaluate', 'align'] as const;
export type Stage = (typeof STAGES)[number];

export const QUEUE_NAMES: Readonly<Record<Stage, Stage>> = {
  generate: 'generate',
  evaluate: 'evaluate',
  align: 'align',
};

export const DEFAULT_QUEUE_PREFIX = '{mod}';

/** BullMQ job name used on every stage queue (BullMQ has no per-name routing; one name keeps dashboards tidy). */
export const STAGE_JOB_NAME = 'moderate';
