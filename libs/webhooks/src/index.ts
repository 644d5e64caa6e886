/**
 * Webhooks (issue 14): Standard Webhooks signatures, the SSRF guard and one-attempt HTTP client, the endpoint
 * registry, the outbox relay and the delivery jobs with their retry schedule and dead-letter state.
 */
export * from './ip-ranges';
export * from './signer';
export * from './target-guard';
export * from './webhook-client';
export * from './config';
export * from './endpoint-registry';
export * from './delivery';
export * from './dead-letters';
export * from './outbox-relay';
export * from './webhooks.module';
