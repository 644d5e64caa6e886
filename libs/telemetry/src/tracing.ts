/**
 * One tracer provider per process: `startTracing(role)` installs a NodeTracerProvider with a BatchSpanProcessor and
 * an OTLP/HTTP (JSON) exporter when the OTEL_* variables ask for it (see config.ts), and nothing otherwise, so with
 * tracing off every span is the API's no-op and the hot paths pay one function call. The provider is
 * process-global: a second call (the test harness runs every role in one process) returns the running one.
 */
import { context, propagation, trace, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type Sampler,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type { Role } from '@libs/settings';
import { tracingConfigFromEnv, type TraceSamplerName, type TracingConfig } from './config';

/** The instrumentation scope of every span this code base starts. */
export const TRACER_NAME = 'vlm-moderation';

export interface Tracing {
  readonly enabled: boolean;
  readonly config: TracingConfig;
  /** Exports what has ended so far (the intake's close, a worker's drain). */
  flush(): Promise<void>;
  /** Flushes, then removes the provider: spans are no-ops again and a later startTracing starts afresh. */
  shutdown(): Promise<void>;
}

let running: { provider: NodeTracerProvider; config: TracingConfig } | undefined;

function samplerOf(name: TraceSamplerName, ratio: number): Sampler {
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio);
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

function exporterOf(name: TracingConfig['exporters'][number], config: TracingConfig): SpanExporter {
  if (name === 'console') return new ConsoleSpanExporter();
  return new OTLPTraceExporter({ url: config.tracesUrl, headers: config.headers, timeoutMillis: config.timeoutMs });
}

export async function flushTracing(): Promise<void> {
  await running?.provider.forceFlush();
}

export async function shutdownTracing(): Promise<void> {
  const current = running;
  if (!current) return;
  running = undefined;
  await current.provider.shutdown();
  // The globals can only be set once each; disabling them lets a later startTracing (a test) register again.
  trace.disable();
  context.disable();
  propagation.disable();
}

function handle(config: TracingConfig, enabled: boolean): Tracing {
  return { enabled, config, flush: flushTracing, shutdown: enabled ? shutdownTracing : async () => undefined };
}

/** Whether this process exports spans (a provider is installed). */
export function tracingEnabled(): boolean {
  return running !== undefined;
}

/**
 * Installs the process's tracer provider if `env` asks for one; idempotent: while one runs, later calls return it
 * (their role and env are not applied). Throws SettingsError on a bad OTEL_* value.
 */
export function startTracing(role: Role, env: NodeJS.ProcessEnv = process.env): Tracing {
  if (running) return handle(running.config, true);
  const config = tracingConfigFromEnv(role, env);
  if (!config.enabled) return handle(config, false);
  const provider = new NodeTracerProvider({
    resource: defaultResource().merge(resourceFromAttributes({ ...config.resourceAttributes, [ATTR_SERVICE_NAME]: config.serviceName })),
    sampler: samplerOf(config.sampler, config.samplerArg),
    spanProcessors: config.exporters.map((name) => new BatchSpanProcessor(exporterOf(name, config), config.batch)),
  });
  // W3C trace context (and baggage) propagation, AsyncLocalStorage context: the SDK's defaults.
  provider.register();
  running = { provider, config };
  return handle(config, true);
}

export function tracer(): Tracer {
  return trace.getTracer(TRACER_NAME);
}
