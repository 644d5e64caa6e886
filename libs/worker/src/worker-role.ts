import { createServer, type Server } from 'node:http';
import { Logger, type DynamicModule, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { Redis } from 'ioredis';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { workerMetricsRegistry } from './stage-worker';
import { STORAGE_REDIS } from '@libs/storage';
import { readSetting, type Role } from '@libs/settings';
import { shutdownTracing, startTracing } from '@libs/telemetry';

export const WORKER_ENV = { healthPort: 'HEALTH_PORT' } as const;
export const DEFAULT_WORKER_HEALTH_PORT = 9464;
export const WORKER_PROBE_PATHS = { liveness: '/healthz', readiness: '/readyz', metrics: '/metrics' } as const;

/** Probes and metrics for a worker role, which has no HTTP API of its own. */
export function startProbeServer(app: INestApplicationContext, port: number): Server {
  const redis = app.get<Redis>(STORAGE_REDIS, { strict: false });
  const registry = Registry.merge([workerMetricsRegistry, new Registry()]);
  collectDefaultMetrics({ register: registry });
  const server = createServer((req, res) => {
    const send = (status: number, body: string, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    if (req.url === WORKER_PROBE_PATHS.liveness) return send(200, '{"status":"ok"}');
    if (req.url === WORKER_PROBE_PATHS.readiness) {
      redis.ping().then(
        () => send(200, '{"status":"ok"}'),
        (err: Error) => send(503, JSON.stringify({ status: 'unavailable', redis: err.message })),
      );
      return;
    }
    if (req.url === WORKER_PROBE_PATHS.metrics) {
      registry.metrics().then((text) => send(200, text, registry.contentType));
      return;
    }
    send(404, '{"error":{"code":"not_found","message":"no such path"}}');
  });
  server.listen(port);
  return server;
}

/**
 * Runs one worker role as its own process: the Nest context (which opens the engine, then starts the BullMQ
 * worker), probes on HEALTH_PORT, and a SIGTERM drain: the worker stops fetching, running jobs finish, then
 * the engine and Redis connections close and the process exits.
 */
export function startWorkerRole(role: string, module: DynamicModule, env: NodeJS.ProcessEnv = process.env): void {
  const logger = new Logger(role);
  // Off unless the OTEL_* variables ask for it; the stage spans are flushed by the drain below.
  const tracing = startTracing(role as Role, env);
  if (tracing.enabled) logger.log(`tracing to ${tracing.config.tracesUrl} as ${tracing.config.serviceName}`);
  (async () => {
    const app = await NestFactory.createApplicationContext(module, { logger: ['error', 'warn', 'log'], abortOnError: false });
    const port = readSetting<number>(env, WORKER_ENV.healthPort) ?? DEFAULT_WORKER_HEALTH_PORT;
    const server = port > 0 ? startProbeServer(app, port) : undefined;
    // Nest's enableShutdownHooks would re-raise the signal after closing, so a clean drain would still look like
    // a kill; app.close() runs the same lifecycle hooks (worker drain, then engine and Redis) and we exit 0.
    // A second signal while draining forces the exit: the job then stalls and another worker retries it.
    let draining = false;
    const drain = (signal: NodeJS.Signals) => {
      if (draining) {
        logger.warn(`${signal} again: exiting without waiting for running jobs`);
        process.exit(1);
      }
      draining = true;
      logger.log(`${signal}: draining`);
      server?.close();
      app
        .close()
        .then(() => shutdownTracing())
        .then(
          () => process.exit(0),
          (err: Error) => {
            logger.error(`shutdown failed: ${err.message}`);
            process.exit(1);
          },
        );
    };
    process.on('SIGTERM', drain);
    process.on('SIGINT', drain);
    logger.log(`${role} ready (probes on :${port}, pid ${process.pid})`);
  })().catch((err) => {
    logger.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  });
}
