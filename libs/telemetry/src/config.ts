/**
 * The tracing configuration of a role, from the standard OTEL_* variables (rows of @libs/settings, documented in
 * docs/deploy.md), with their defaults in one place. Exporting is off unless the variables ask for it: an OTLP
 * endpoint is set, or OTEL_TRACES_EXPORTER names an exporter; OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true
 * turn it off whatever else is set.
 */
import { readSetting, type Role } from '@libs/settings';

export const TRACING_ENV = {
  disabled: 'OTEL_SDK_DISABLED',
  exporter: 'OTEL_TRACES_EXPORTER',
  endpoint: 'OTEL_EXPORTER_OTLP_ENDPOINT',
  tracesEndpoint: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
  protocol: 'OTEL_EXPORTER_OTLP_PROTOCOL',
  tracesProtocol: 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL',
  headers: 'OTEL_EXPORTER_OTLP_HEADERS',
  tracesHeaders: 'OTEL_EXPORTER_OTLP_TRACES_HEADERS',
  timeout: 'OTEL_EXPORTER_OTLP_TIMEOUT',
  tracesTimeout: 'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT',
  serviceName: 'OTEL_SERVICE_NAME',
  resourceAttributes: 'OTEL_RESOURCE_ATTRIBUTES',
  sampler: 'OTEL_TRACES_SAMPLER',
  samplerArg: 'OTEL_TRACES_SAMPLER_ARG',
  scheduleDelay: 'OTEL_BSP_SCHEDULE_DELAY',
  maxQueueSize: 'OTEL_BSP_MAX_QUEUE_SIZE',
  maxExportBatchSize: 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE',
  exportTimeout: 'OTEL_BSP_EXPORT_TIMEOUT',
} as const;

export const TRACE_EXPORTERS = ['otlp', 'console', 'none'] as const;
export type TraceExporterName = (typeof TRACE_EXPORTERS)[number];

export const TRACE_SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const;
export type TraceSamplerName = (typeof TRACE_SAMPLERS)[number];

/** The specification's defaults (OpenTelemetry "Environment Variable Specification"), except where noted. */
export const TRACING_DEFAULTS = {
  /** The spec's base endpoint for OTLP/HTTP; `/v1/traces` is appended to a base endpoint, never to a traces one. */
  endpoint: 'http://localhost:4318',
  /** The only encoding @opentelemetry/exporter-trace-otlp-http sends (the spec's default is http/protobuf). */
  protocol: 'http/json',
  timeoutMs: 10_000,
  sampler: 'parentbased_always_on' as TraceSamplerName,
  samplerArg: 1,
  scheduleDelayMs: 5000,
  maxQueueSize: 2048,
  maxExportBatchSize: 512,
  exportTimeoutMs: 30_000,
} as const;

export interface TracingConfig {
  /** False: no provider is installed, spans are the API's no-ops and nothing is exported. */
  enabled: boolean;
  /** Why tracing is off, for the start-up log. */
  reason?: string;
  serviceName: string;
  exporters: Exclude<TraceExporterName, 'none'>[];
  /** Full URL the OTLP exporter posts to. */
  tracesUrl: string;
  /** Always http/json: the settings schema refuses any other encoding at start-up. */
  protocol: typeof TRACING_DEFAULTS.protocol;
  headers: Record<string, string>;
  timeoutMs: number;
  sampler: TraceSamplerName;
  samplerArg: number;
  resourceAttributes: Record<string, string>;
  batch: { scheduledDelayMillis: number; maxQueueSize: number; maxExportBatchSize: number; exportTimeoutMillis: number };
}

/** `key=value,key2=value2` (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES): values percent-decoded. */
export function parseKeyValueList(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (text ?? '').split(',')) {
    const at = part.indexOf('=');
    if (at <= 0) continue;
    const key = part.slice(0, at).trim();
    const raw = part.slice(at + 1).trim();
    let value = raw;
    try {
      value = decodeURIComponent(raw);
    } catch {
      // Kept as written: a stray '%' is more likely part of the value than a broken escape.
    }
    if (key) out[key] = value;
  }
  return out;
}

function tracesUrlOf(env: NodeJS.ProcessEnv): string {
  const traces = readSetting<string>(env, TRACING_ENV.tracesEndpoint);
  if (traces) return traces;
  const base = readSetting<string>(env, TRACING_ENV.endpoint) ?? TRACING_DEFAULTS.endpoint;
  return `${base.replace(/\/+$/, '')}/v1/traces`;
}

export function tracingConfigFromEnv(role: Role, env: NodeJS.ProcessEnv = process.env): TracingConfig {
  const resourceAttributes = parseKeyValueList(readSetting<string>(env, TRACING_ENV.resourceAttributes));
  const listed = readSetting<TraceExporterName[]>(env, TRACING_ENV.exporter);
  const endpointSet = readSetting<string>(env, TRACING_ENV.endpoint) !== undefined || readSetting<string>(env, TRACING_ENV.tracesEndpoint) !== undefined;
  // Off by default, unlike the spec's `otlp`: a role without a collector must not log export failures every 5 s.
  const exporters = (listed ?? (endpointSet ? ['otlp'] : [])).filter((e): e is Exclude<TraceExporterName, 'none'> => e !== 'none');
  let reason: string | undefined;
  if (readSetting<boolean>(env, TRACING_ENV.disabled)) reason = `${TRACING_ENV.disabled}=true`;
  else if (listed?.includes('none')) reason = `${TRACING_ENV.exporter}=none`;
  else if (exporters.length === 0) reason = `neither ${TRACING_ENV.exporter} nor an OTLP endpoint is set`;
  return {
    enabled: reason === undefined,
    reason,
    serviceName: readSetting<string>(env, TRACING_ENV.serviceName) ?? resourceAttributes['service.name'] ?? role,
    exporters: reason === undefined ? exporters : [],
    tracesUrl: tracesUrlOf(env),
    protocol: readSetting<'http/json'>(env, TRACING_ENV.tracesProtocol) ?? readSetting<'http/json'>(env, TRACING_ENV.protocol) ?? TRACING_DEFAULTS.protocol,
    headers: {
      ...parseKeyValueList(readSetting<string>(env, TRACING_ENV.headers)),
      ...parseKeyValueList(readSetting<string>(env, TRACING_ENV.tracesHeaders)),
    },
    timeoutMs: readSetting<number>(env, TRACING_ENV.tracesTimeout) ?? readSetting<number>(env, TRACING_ENV.timeout) ?? TRACING_DEFAULTS.timeoutMs,
    sampler: readSetting<TraceSamplerName>(env, TRACING_ENV.sampler) ?? TRACING_DEFAULTS.sampler,
    samplerArg: readSetting<number>(env, TRACING_ENV.samplerArg) ?? TRACING_DEFAULTS.samplerArg,
    resourceAttributes,
    batch: {
      scheduledDelayMillis: readSetting<number>(env, TRACING_ENV.scheduleDelay) ?? TRACING_DEFAULTS.scheduleDelayMs,
      maxQueueSize: readSetting<number>(env, TRACING_ENV.maxQueueSize) ?? TRACING_DEFAULTS.maxQueueSize,
      maxExportBatchSize: readSetting<number>(env, TRACING_ENV.maxExportBatchSize) ?? TRACING_DEFAULTS.maxExportBatchSize,
      exportTimeoutMillis: readSetting<number>(env, TRACING_ENV.exportTimeout) ?? TRACING_DEFAULTS.exportTimeoutMs,
    },
  };
}
