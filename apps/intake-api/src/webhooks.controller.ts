import { Controller, Delete, Get, HttpCode, Inject, Param, Post, Query, Req } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import {
  ModerationError,
  WEBHOOK_EVENT_TYPES,
  type DeadLetterPage,
  type ReplayAccepted,
  type WebhookCreated,
  type WebhookEventType,
  type WebhookList,
} from '@libs/contracts';
import { DeadLetters, EndpointRegistry, publicEndpoint } from '@libs/webhooks';
import { CurrentPrincipal, requireAdmin, tenantOf, type Principal } from './auth';
import { INTAKE_CONFIG, type IntakeConfig } from './config';

const ENDPOINT_ID = /^whk_[0-9a-f]{24}$/;

const REGISTRATION_FIELDS = ['url', 'events'];

function registration(body: unknown): { url: unknown; events?: WebhookEventType[] } {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new ModerationError('invalid_request', 'request body must be a JSON object');
  const fields = body as Record<string, unknown>;
  for (const name of Object.keys(fields)) {
    if (!REGISTRATION_FIELDS.includes(name)) {
      throw new ModerationError('unknown_field', `a webhook has no field "${name.slice(0, 100)}"; it takes url, events`, { field: name.slice(0, 100) });
    }
  }
  if (fields.events === undefined) return { url: fields.url };
  const events = fields.events;
  if (!Array.isArray(events) || events.length === 0 || !events.every((e) => (WEBHOOK_EVENT_TYPES as readonly unknown[]).includes(e))) {
    throw new ModerationError('invalid_request', `events must be a non-empty array of ${WEBHOOK_EVENT_TYPES.join(', ')}`, { field: 'events' });
  }
  return { url: fields.url, events: events as WebhookEventType[] };
}

/** A tenant's webhook endpoints: register (the secret is answered once), list, delete. */
@Controller('v1/webhooks')
export class WebhooksController {
  constructor(private readonly registry: EndpointRegistry) {}

  @Post()
  @HttpCode(201)
  async register(@Req() req: FastifyRequest, @CurrentPrincipal() principal: Principal): Promise<WebhookCreated> {
    const tenant = tenantOf(principal);
    const { url, events } = registration(req.body);
    const endpoint = await this.registry.add(tenant, url, events);
    return { ...publicEndpoint(endpoint), secret: endpoint.secret };
  }

  @Get()
  async list(@CurrentPrincipal() principal: Principal): Promise<WebhookList> {
    const tenant = tenantOf(principal);
    return { data: (await this.registry.list(tenant)).map(publicEndpoint) };
  }

  @Delete(':id')
  @HttpCode(204)
  async remove(@Param('id') id: string, @CurrentPrincipal() principal: Principal): Promise<void> {
    const tenant = tenantOf(principal);
    if (!ENDPOINT_ID.test(id))
      throw new ModerationError('invalid_id', 'not a webhook id: they look like whk_<24 hex digits>', { expected: 'whk_<24 hex digits>' });
    if (!(await this.registry.remove(tenant, id))) throw new ModerationError('not_found', `no webhook ${id}`);
  }
}

/** Deliveries that gave up (BullMQ's failed set of the `webhook` queue): the admin lists and replays them. */
@Controller('admin/webhooks/dead-letter')
export class DeadLetterController {
  constructor(
    private readonly deadLetters: DeadLetters,
    @Inject(INTAKE_CONFIG) private readonly config: IntakeConfig,
  ) {}

  @Get()
  async list(@Req() req: FastifyRequest, @Query('cursor') cursor?: string, @Query('limit') limit?: string): Promise<DeadLetterPage> {
    requireAdmin(this.config, req.headers, 'the webhook dead-letter list');
    const size = limit === undefined ? 100 : Number(limit);
    if (!Number.isInteger(size) || size < 1 || size > 1000) throw new ModerationError('invalid_request', 'limit must be 1..1000');
    let offset = 0;
    if (cursor) {
      const decoded = /^[A-Za-z0-9_-]+$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
      if (!/^\d{1,9}$/.test(decoded)) throw new ModerationError('invalid_request', 'bad cursor; pass next_cursor as given');
      offset = Number(decoded);
    }
    const page = await this.deadLetters.list(offset, size);
    return { data: page.data, next_cursor: page.next === null ? null : Buffer.from(String(page.next)).toString('base64url') };
  }

  @Post(':jobId/replay')
  @HttpCode(202)
  async replay(@Req() req: FastifyRequest, @Param('jobId') jobId: string): Promise<ReplayAccepted> {
    requireAdmin(this.config, req.headers, 'replaying webhook deliveries');
    await this.deadLetters.replay(jobId);
    return { id: jobId, status: 'queued' };
  }
}
