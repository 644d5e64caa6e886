import 'reflect-metadata';
// First: validates the environment before any import reads it.
import './env-check';
import { Logger } from '@nestjs/common';
import { createIntakeApp } from './app';
import { intakeConfigFromEnv } from './config';
import { startTracing } from '@libs/telemetry';

async function main(): Promise<void> {
  const config = intakeConfigFromEnv();
  // Before the app: the OTEL_* variables decide whether spans are exported (off by default); flushed on close.
  const tracing = startTracing('intake-api');
  if (tracing.enabled) new Logger('IntakeApi').log(`tracing to ${tracing.config.tracesUrl} as ${tracing.config.serviceName}`);
  if (config.tenantKeys.size === 0) new Logger('IntakeApi').warn('no tenant API keys configured (API_KEYS / API_KEYS_FILE): every submission will be refused');
  const app = await createIntakeApp();
  // SIGTERM: stop accepting, finish in-flight requests, close queues and Redis.
  app.enableShutdownHooks();
  await app.listen(config.port, config.host);
  new Logger('IntakeApi').log(`listening on ${config.host}:${config.port}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
