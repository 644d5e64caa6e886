import 'reflect-metadata';
import fastifyMultipart from '@fastify/multipart';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter as BullBoardFastifyAdapter } from '@bull-board/fastify';
import type { LoggerService, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { SwaggerModule, type OpenAPIObject } from '@nestjs/swagger';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { ModerationError, openApiDocument } from '@libs/contracts';
import { queuePrefix, StageDispatcher, TenantRateLimiter } from '@libs/queue';
import { STORAGE_REDIS } from '@libs/storage';
import { WEBHOOK_QUEUE } from '@libs/webhooks';
import type { Queue } from 'bullmq';
import { traceHttpRequests } from '@libs/telemetry';
import { requireAdmin } from './auth';
import { intakeBodyLimits } from './body-limits';
import { intakeConfigFromEnv } from './config';
import { ErrorFilter, renderError } from './error.filter';
import { IntakeModule } from './intake.module';
import { jsonDepthExceeds } from './json-depth';
import { IntakeMetrics } from './metrics';
import { tenantRateHook } from './tenant-rate';

export const ADMIN_DASHBOARD_PATH = '/admin/queues';

export interface IntakeAppOptions {
  env?: NodeJS.ProcessEnv;
  logger?: LoggerService | LogLevel[] | false;
}

function sendError(reply: FastifyReply, err: unknown, metrics?: IntakeMetrics, basicRealm?: string): void {
  const rendered = renderError(err);
  metrics?.rejected.inc({ code: rendered.body.error.code });
  if (rendered.retryAfter) reply.header('Retry-After', String(rendered.retryAfter));
  if (rendered.status === 401 && basicRealm) reply.header('WWW-Authenticate', `Basic realm="${basicRealm}"`);
  reply.type('application/json; charset=utf-8').status(rendered.status).send(rendered.body);
}

/** Node's own answers to requests it cannot parse (fastify's `clientErrorHandler`), in the API's error shape. */
function clientErrorHandler(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code, message] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'request_timeout', 'the request was not received in time']
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'headers_too_large', 'the request headers are over the size limit']
        : [400, 'invalid_request', 'malformed HTTP request'];
  const body = JSON.stringify({ error: { code, message } });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}

/** Builds the intake API (not listening yet): used by main.ts, the demo and the end-to-end tests. */
export async function createIntakeApp(options: IntakeAppOptions = {}): Promise<NestFastifyApplication> {
  const env = options.env ?? process.env;
  const config = intakeConfigFromEnv(env);
  const { limits } = config;
  const bodyLimits = intakeBodyLimits(limits);
  let metrics: IntakeMetrics | undefined;
  const app = await NestFactory.create<NestFastifyApplication>(
    IntakeModule.register(env, config),
    new FastifyAdapter({
      bodyLimit: limits.maxRequestBytes,
      trustProxy: true,
      // Ids are ~40 characters; a longer path parameter is refused (as invalid_id) before routing.
      routerOptions: { maxParamLength: 128 },
      // Router errors (a percent-escape that does not decode, an over-long parameter) in the API's error shape.
      frameworkErrors: (err: Error, _req: FastifyRequest, reply: FastifyReply) => sendError(reply, err, metrics),
      clientErrorHandler,
    }),
    { logger: options.logger ?? ['error', 'warn', 'log'] },
  );
  metrics = app.get(IntakeMetrics);
  const fastify = app.getHttpAdapter().getInstance();
  // First of the hooks: a request refused early (413, 429) still gets its span. A no-op unless tracing was started.
  traceHttpRequests(fastify);

  // Body limits that follow from the item limits (a job body is one item, a batch body maxBatchItems items), so a
  // long prompt is refused by its size, from Content-Length or while streaming, before a byte of it is parsed.
  fastify.addHook('onRoute', (route) => {
    const methods = [route.method].flat();
    if (!methods.includes('POST')) return;
    if (route.url === '/v1/jobs') route.bodyLimit = bodyLimits.job;
    if (route.url === '/v1/batches') route.bodyLimit = bodyLimits.batch;
  });

  // JSON bodies: depth is checked on the text, without recursion, before anything parses or walks it; the parse
  // itself is fastify's (prototype-poisoning protection included).
  const parseJson = fastify.getDefaultJsonParser('error', 'error');
  app.useBodyParser('application/json', { bodyLimit: limits.maxRequestBytes }, (req, body, done) => {
    const text = body.toString('utf8');
    if (jsonDepthExceeds(text, limits.maxJsonDepth)) {
      done(
        new ModerationError('json_too_deep', `the JSON body is nested deeper than ${limits.maxJsonDepth} levels`, { limit: limits.maxJsonDepth }),
        undefined,
      );
      return;
    }
    parseJson(req as never, text, done);
  });

  await app.register(fastifyMultipart as never, { limits: { fileSize: limits.maxImageBytes } });

  // Oversized bodies are refused from Content-Length before a byte is read (multipart too, which fastify does not read).
  fastify.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    const length = Number(req.headers['content-length'] ?? 0);
    const limit = req.routeOptions?.bodyLimit ?? limits.maxRequestBytes;
    if (length > limit) {
      sendError(reply, new ModerationError('request_too_large', `request is ${length} bytes; the limit is ${limit}`, { limit }), metrics);
      return reply;
    }
  });
  // Each tenant's submission rate (cluster-wide, in Redis), after the size check and before the body is read.
  const rateLimiter = new TenantRateLimiter(app.get(STORAGE_REDIS), queuePrefix(env));
  fastify.addHook(
    'onRequest',
    tenantRateHook(config, rateLimiter, (reply, err) => sendError(reply, err, metrics)),
  );
  fastify.addHook('onResponse', async (req: FastifyRequest, reply: FastifyReply) => {
    const route = req.routeOptions?.url ?? 'unmatched';
    metrics!.httpRequests.inc({ method: req.method, route, status: String(reply.statusCode) });
    metrics!.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
  });
  // Nest routes fastify's own errors (body parsing, multipart limits) through this filter too, so every error has one shape.
  app.useGlobalFilters(new ErrorFilter((code) => metrics!.rejected.inc({ code })));

  // The document is written by hand from the zod contracts (libs/contracts/src/openapi.ts), every status each route
  // can answer included; `servers` is the address the document was fetched from.
  const document = openApiDocument({ limits, metricsAuth: config.metricsAuth }) as unknown as OpenAPIObject;
  SwaggerModule.setup('docs', app, document, {
    jsonDocumentUrl: 'openapi.json',
    patchDocumentOnRequest: (req, _res, doc) => {
      const r = req as FastifyRequest;
      return { ...doc, servers: [{ url: `${r.protocol}://${r.host}`, description: 'This intake API' }] };
    },
  });

  // The dashboard lives in its own encapsulated plugin whose onRequest hook checks the admin key: the hook runs for
  // every request the router matched to one of the dashboard's routes, whatever spelling of the path got it there
  // (percent-escapes, which the router decodes), and for no other.
  const board = new BullBoardFastifyAdapter();
  board.setBasePath(ADMIN_DASHBOARD_PATH);
  createBullBoard({
    // The stage queues, and the webhook deliveries (their failed set is the dead-letter state).
    queues: [...app.get(StageDispatcher).all(), app.get<Queue>(WEBHOOK_QUEUE)].map((q) => new BullMQAdapter(q)),
    serverAdapter: board as never,
  });
  await app.register(async (dashboard: FastifyInstance) => {
    dashboard.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
      try {
        requireAdmin(config, req.headers, 'the queue dashboard');
      } catch (err) {
        sendError(reply, err, metrics, 'queues');
        return reply;
      }
    });
    await dashboard.register(board.registerPlugin() as never, { prefix: ADMIN_DASHBOARD_PATH });
  });

  await app.init();
  return app;
}
