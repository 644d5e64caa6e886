import type { FastifyReply, FastifyRequest } from 'fastify';
import { ModerationError } from '@libs/contracts';
import type { TenantRateLimiter } from '@libs/queue';
import { authenticate } from './auth';
import type { IntakeConfig } from './config';

/**
 * The routes a tenant's request rate applies to: the submissions, whose cost (parsing, image checks, blob writes)
 * the rate protects. Reads (polling a job or a batch) are not limited: a client polling its verdicts must not
 * lose the budget it needs to submit, and a read is one Redis lookup.
 */
export const RATE_LIMITED_ROUTES: ReadonlySet<string> = new Set(['POST /v1/jobs', 'POST /v1/batches']);

/**
 * An onRequest hook: takes one request of the tenant's rate (TenantRateLimiter, a GCRA in Redis) before a byte of
 * the body is read, and answers 429 tenant_rate_limited with the GCRA's Retry-After when there is none left.
 * Requests without a valid tenant key pass untouched: the guard answers them (401, or 403 for the admin key), as
 * before. A Redis failure fails the request with 503 (renderError maps it), as the submission's own Redis calls would.
 */
export function tenantRateHook(config: IntakeConfig, limiter: TenantRateLimiter, refuse: (reply: FastifyReply, err: unknown) => void) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    if (!RATE_LIMITED_ROUTES.has(`${req.method} ${req.routeOptions?.url}`)) return undefined;
    let tenant: string | null;
    try {
      tenant = authenticate(config, req.headers).tenant;
    } catch {
      return undefined;
    }
    if (!tenant) return undefined;
    const limits = config.tenantLimits.for(tenant);
    if (!(limits.ratePerSecond > 0)) return undefined;
    try {
      const decision = await limiter.consume(tenant, limits);
      if (decision.allowed) return undefined;
      refuse(
        reply,
        new ModerationError(
          'tenant_rate_limited',
          `this tenant may send ${limits.ratePerSecond} submissions per second (bursts of ${limits.burst}); retry in ${decision.retryAfterSeconds} s`,
          {
            retry_after_seconds: decision.retryAfterSeconds,
            retry_after_ms: Math.ceil(decision.retryAfterMs),
            rate_per_second: limits.ratePerSecond,
            burst: limits.burst,
          },
        ),
      );
    } catch (err) {
      refuse(reply, err);
    }
    return reply;
  };
}
