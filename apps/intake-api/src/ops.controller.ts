import { Controller, Get, Header, Inject, Req, Res } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import { STORAGE_REDIS } from '@libs/storage';
import { Public, requireAdmin } from './auth';
import { INTAKE_CONFIG, type IntakeConfig } from './config';
import { IntakeMetrics } from './metrics';

@Public()
@Controller()
export class OpsController {
  constructor(
    @Inject(STORAGE_REDIS) private readonly redis: Redis,
    private readonly metrics: IntakeMetrics,
    @Inject(INTAKE_CONFIG) private readonly config: IntakeConfig,
  ) {}

  @Get('healthz')
  healthz(): { status: string } {
    return { status: 'ok' };
  }

  @Get('readyz')
  async readyz(@Res() reply: FastifyReply): Promise<void> {
    try {
      const pong = await Promise.race([this.redis.ping(), new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), 1000).unref())]);
      reply.status(200).send({ status: 'ok', redis: pong });
    } catch (err) {
      reply.status(503).send({ status: 'unavailable', redis: (err as Error).message });
    }
  }

  @Get('metrics')
  @Header('Content-Type', 'text/plain; version=0.0.4')
  async prometheus(@Req() req: FastifyRequest): Promise<string> {
    // Checked on the matched route, so every spelling of the path that reaches this handler is checked.
    if (this.config.metricsAuth === 'admin') requireAdmin(this.config, req.headers, 'metrics');
    return this.metrics.registry.metrics();
  }
}
