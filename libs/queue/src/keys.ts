import type { Stage } from '@libs/contracts';

/**
 * The Redis keys KEDA's redis scaler reads for one stage queue (BullMQ 6 key layout, src/classes/queue-keys.ts).
 * The scaler LLENs lists and ZCARDs zsets, so summing wait + prioritized + active counts every job that is
 * waiting or running: a wait-list-only trigger misses prioritized and active jobs and could scale a busy role to zero.
 */
export function kedaQueueKeys(prefix: string, stage: Stage): { wait: string; prioritized: string; active: string } {
  return {
    wait: `${prefix}:${stage}:wait`,
    prioritized: `${prefix}:${stage}:prioritized`,
    active: `${prefix}:${stage}:active`,
  };
}

/** Keys of the verdict store, under the same hash tag as the queues. */
export function verdictKeys(prefix: string) {
  return {
    verdict: (id: string) => `${prefix}:verdict:${id}`,
    batch: (id: string) => `${prefix}:batch:${id}`,
    batchItems: (id: string) => `${prefix}:batch:${id}:items`,
    batchCounts: (id: string) => `${prefix}:batch:${id}:counts`,
    idempotency: (tenant: string, keyHash: string) => `${prefix}:idem:${tenant}:${keyHash}`,
  };
}

/** Every key of one stage queue that holds a job not finished yet (BullMQ 6 layout), and a job's own hash. */
export function stageQueueKeys(prefix: string, stage: Stage) {
  return {
    wait: `${prefix}:${stage}:wait`,
    paused: `${prefix}:${stage}:paused`,
    prioritized: `${prefix}:${stage}:prioritized`,
    delayed: `${prefix}:${stage}:delayed`,
    active: `${prefix}:${stage}:active`,
    job: (id: string) => `${prefix}:${stage}:${id}`,
  };
}

/**
 * Keys of each tenant's own accounting, under the queue prefix so the verdict scripts can update them atomically.
 * `inflight` counts a tenant's accepted items that have no final verdict yet: the creation adds them and the
 * verdict's move to succeeded or failed takes them off, in the same scripts (VerdictStore), so it never drifts.
 */
export function tenantKeys(prefix: string) {
  return {
    /** hash: tenant -> items accepted and not finished (queued or processing). */
    inflight: `${prefix}:tenants:inflight`,
    /** string per tenant: its request-rate GCRA's theoretical arrival time (µs, Redis time); expires when idle. */
    rate: (tenant: string) => `${prefix}:tenants:rate:${tenant}`,
  };
}

/**
 * Keys of webhook notification. A verdict's move to a final status appends an event to `outbox` in the same script
 * that writes the status (a transactional outbox: no verdict finishes without its event, none is announced that did
 * not finish), for tenants in `subscribed` and for jobs or batches that carry a callback URL. The notifier role
 * reads the outbox with a consumer group and turns each event into delivery jobs.
 */
export function webhookKeys(prefix: string) {
  return {
    /** stream: one entry per event (type, id, tenant, batch, callback, at). */
    outbox: `${prefix}:webhooks:outbox`,
    /** set: tenants with at least one registered endpoint (the outbox is written only for them or for callbacks). */
    subscribed: `${prefix}:webhooks:subscribed`,
    /** hash per tenant: endpoint id -> JSON { id, url, secret, events, created_at } of the endpoints registered through the API. */
    endpoints: (tenant: string) => `${prefix}:webhooks:endpoints:${tenant}`,
    /** hash: tenant -> the last registration number given (each stored endpoint keeps its own as `seq`: list order). */
    endpointSeq: `${prefix}:webhooks:endpoint-seq`,
  };
}

/** Keys of the intake's admission (cluster-wide backlog reservations) and of blob garbage collection. */
export function intakeKeys(prefix: string) {
  return {
    /** zset: `<token>:<items>` -> expiry (ms, Redis time) of a capacity reservation not yet committed. */
    reservations: `${prefix}:intake:reservations`,
    /** zset: blob sha256 -> the latest expiry (ms, Redis time) of any verdict (or upload) referencing it. */
    blobExpiry: `${prefix}:blobs:expiry`,
    /** A collector deleting this blob holds it; uploads of the same bytes wait. */
    blobLock: (sha: string) => `${prefix}:blobs:deleting:${sha}`,
  };
}

/**
 * Keys of fair scheduling between tenants (fairness.ts). Outside the stage queue's own namespace (`{prefix}:<stage>:`)
 * on purpose: a moderation id is a BullMQ job id there, and `fair-tags` would be a valid one.
 */
export function fairKeys(prefix: string) {
  return {
    /** hash per stage: tenant -> finish tag (the priority after that tenant's last job queued in the stage). */
    tags: (stage: Stage) => `${prefix}:fair:${stage}:tags`,
  };
}
