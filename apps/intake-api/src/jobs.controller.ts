import { Controller, Get, HttpCode, Inject, Param, Post, Query, Req } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { ModerationError, type BatchAccepted, type BatchStatus, type JobAccepted, type Verdict, type VerdictPage } from '@libs/contracts';
import { VERDICT_STORE, type VerdictStore } from '@libs/storage';
import { EndpointRegistry } from '@libs/webhooks';
import { canRead, CurrentPrincipal, tenantOf, type Principal } from './auth';
import { readBatch, readJob } from './body-reader';
import { INTAKE_CONFIG, type IntakeConfig } from './config';
import { checkId } from './ids';
import { IntakeService } from './intake.service';

function idempotencyKeyOf(req: FastifyRequest): string | undefined {
  const value = req.headers['idempotency-key'];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/**
 * The moderation routes. What they accept and answer is documented in `/openapi.json`, written from the zod
 * contracts (libs/contracts openApiDocument) and checked against every response the tests see, not from decorators.
 */
@Controller('v1')
export class JobsController {
  constructor(
    private readonly intake: IntakeService,
    @Inject(VERDICT_STORE) private readonly verdicts: VerdictStore,
    @Inject(INTAKE_CONFIG) private readonly config: IntakeConfig,
    private readonly webhooks: EndpointRegistry,
  ) {}

  /** A callback_url must share its origin with one of the tenant's webhook endpoints (whose secret signs it). */
  private async callbackOf(tenant: string, raw: unknown): Promise<string | undefined> {
    if (raw === undefined || raw === null || raw === '') return undefined;
    return this.webhooks.checkCallback(tenant, raw);
  }

  @Post('jobs')
  @HttpCode(202)
  async submitJob(@Req() req: FastifyRequest, @CurrentPrincipal() principal: Principal): Promise<JobAccepted> {
    const tenant = tenantOf(principal);
    const item = await readJob(req, this.config.limits);
    return this.intake.submitJob(tenant, item, idempotencyKeyOf(req), await this.callbackOf(tenant, item.callbackUrl));
  }

  @Get('jobs/:id')
  async getJob(@Param('id') id: string, @CurrentPrincipal() principal: Principal): Promise<Verdict> {
    const stored = await this.verdicts.get(checkId('job', id));
    if (!stored || !canRead(principal, stored.tenant)) throw new ModerationError('not_found', `no job ${id}`);
    return stored.verdict;
  }

  @Post('batches')
  @HttpCode(202)
  async submitBatch(@Req() req: FastifyRequest, @CurrentPrincipal() principal: Principal): Promise<BatchAccepted> {
    const tenant = tenantOf(principal);
    const { items, metadata, callbackUrl } = await readBatch(req, this.config.limits);
    return this.intake.submitBatch(tenant, items, metadata, idempotencyKeyOf(req), await this.callbackOf(tenant, callbackUrl));
  }

  @Get('batches/:id')
  async getBatch(@Param('id') id: string, @CurrentPrincipal() principal: Principal): Promise<BatchStatus> {
    const batch = await this.verdicts.batch(checkId('batch', id));
    if (!batch || !canRead(principal, batch.tenant)) throw new ModerationError('not_found', `no batch ${id}`);
    return {
      id,
      object: 'moderation.batch',
      total: batch.total,
      counts: batch.counts,
      done: batch.counts.succeeded + batch.counts.failed >= batch.total,
      created_at: batch.created_at,
      metadata: batch.metadata,
    };
  }

  @Get('batches/:id/verdicts')
  async getBatchVerdicts(
    @Param('id') id: string,
    @CurrentPrincipal() principal: Principal,
    @Query('cursor') cursor?: string,
    @Query('limit') limit?: string,
  ): Promise<VerdictPage> {
    const batch = await this.verdicts.batch(checkId('batch', id));
    if (!batch || !canRead(principal, batch.tenant)) throw new ModerationError('not_found', `no batch ${id}`);
    const size = limit === undefined ? 100 : Number(limit);
    if (!Number.isInteger(size) || size < 1 || size > 1000) throw new ModerationError('invalid_request', 'limit must be 1..1000');
    let position: number | null = null;
    if (cursor) {
      const decoded = /^[A-Za-z0-9_-]+$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
      if (!/^-?\d+$/.test(decoded)) throw new ModerationError('invalid_request', 'bad cursor; pass next_cursor as given');
      position = Number(decoded);
    }
    const page = await this.verdicts.batchPage(id, position, size);
    return {
      data: page.verdicts,
      next_cursor: page.nextCursor === null ? null : Buffer.from(String(page.nextCursor)).toString('base64url'),
    };
  }
}
