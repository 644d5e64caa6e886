import 'reflect-metadata';
import fastifyMultipart from '@fastify/multipart';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter as BullBoardFastifyAdapter } from '@bull-board/fastify';
import type { LoggerService, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ModerationError, openApiComponentSchemas } from '@libs/contracts';
import { StageDispatcher } from '@libs/queue';
import { authenticate } from './auth';
import { intakeConfigFromEnv } from './config';
import { ErrorFilter, renderError } from './error.filter';
import { IntakeModule } from './intake.module';
import { IntakeMetrics } from './metrics';

export const ADMIN_DASHBOARD_PATH = '/admin/queues';

export interface IntakeAppOptions {
  env?: NodeJS.ProcessEnv;
  logger?: LoggerService | LogLevel[] | false;
}

function sendError(reply: FastifyReply, err: unknown, metrics?: IntakeMetrics): void {
  const rendered = renderError(err);
  metrics?.rejected.inc({ code: rendered.body.error.code });
  if (rendered.retryAfter) reply.header('Retry-After', String(rendered.retryAfter));
  if (rendered.status === 401 && reply.request.url.startsWith(ADMIN_DASHBOARD_PATH)) {
    reply.header('WWW-Authenticate', 'Basic realm="queues"');
  }
  reply.status(rendered.status).send(rendered.body);
}

/** Builds the intake API (not listening yet): used by main.ts, the demo and the end-to-end tests. */
export async function createIntakeApp(options: IntakeAppOptions = {}): Promise<NestFastifyApplication> {
  const env = options.env ?? process.env;
  const config = intakeConfigFromEnv(env);
  const app = await NestFactory.create<NestFastifyApplication>(
    IntakeModule.register(env, config),
    new FastifyAdapter({ bodyLimit: config.limits.maxRequestBytes, trustProxy: true }),
    { logger: options.logger ?? ['error', 'warn', 'log'] },
  );
  const metrics = app.get(IntakeMetrics);
  const fastify = app.getHttpAdapter().getInstance();

  await app.register(fastifyMultipart as never, { limits: { fileSize: config.limits.maxImageBytes } });

  // Oversized bodies are refused from Content-Length before a byte is read.
  fastify.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    const length = Number(req.headers['content-length'] ?? 0);
    if (length > config.limits.maxRequestBytes) {
      sendError(reply, new ModerationError('request_too_large', `request is ${length} bytes; the limit is ${config.limits.maxRequestBytes}`), metrics);
      return reply;
    }
    if (req.url.startsWith(ADMIN_DASHBOARD_PATH)) {
      try {
        if (!authenticate(config, req.headers).admin) throw new ModerationError('forbidden', 'the queue dashboard needs the admin key');
      } catch (err) {
        sendError(reply, err, metrics);
        return reply;
      }
    }
  });
  fastify.addHook('onResponse', async (req: FastifyRequest, reply: FastifyReply) => {
    const route = req.routeOptions?.url ?? 'unmatched';
    metrics.httpRequests.inc({ method: req.method, route, status: String(reply.statusCode) });
    metrics.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
  });
  // Nest routes fastify's own errors (body parsing, multipart limits) through this filter too, so every error has one shape.
  app.useGlobalFilters(new ErrorFilter((code) => metrics.rejected.inc({ code })));

  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('VLM moderation intake API')
      .setDescription('Submit image + prompt jobs and batches; poll verdicts. Errors carry a machine-readable error.code.')
      .setVersion('1')
      .addApiKey({ type: 'apiKey', in: 'header', name: 'X-API-Key' }, 'api-key')
      .build(),
  );
  document.components = { ...document.components, schemas: { ...(document.components?.schemas ?? {}), ...(openApiComponentSchemas() as Record<string, object>) } };
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'openapi.json' });

  const board = new BullBoardFastifyAdapter();
  board.setBasePath(ADMIN_DASHBOARD_PATH);
  createBullBoard({ queues: app.get(StageDispatcher).all().map((q) => new BullMQAdapter(q)), serverAdapter: board as never });
  await app.register(board.registerPlugin() as never, { prefix: ADMIN_DASHBOARD_PATH });

  await app.init();
  return app;
}
