import { describe, expect, it } from 'vitest';
import { loadSettings, SETTINGS } from '@libs/settings';
import { parseKeyValueList, TRACE_SAMPLERS, TRACING_DEFAULTS, TRACING_ENV, tracingConfigFromEnv } from '@libs/telemetry';

describe('tracing configuration from the OTEL_* variables', () => {
  it('is off by default, on with an endpoint or an exporter, off again with none or OTEL_SDK_DISABLED', () => {
    expect(tracingConfigFromEnv('generator', {})).toMatchObject({ enabled: false, exporters: [] });
    expect(tracingConfigFromEnv('generator', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toMatchObject({
      enabled: true,
      exporters: ['otlp'],
      tracesUrl: 'http://collector:4318/v1/traces',
    });
    expect(tracingConfigFromEnv('generator', { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/custom' })).toMatchObject({
      enabled: true,
      tracesUrl: 'http://c:4318/custom',
    });
    expect(tracingConfigFromEnv('generator', { OTEL_TRACES_EXPORTER: 'otlp' })).toMatchObject({ enabled: true, tracesUrl: 'http://localhost:4318/v1/traces' });
    expect(tracingConfigFromEnv('generator', { OTEL_TRACES_EXPORTER: 'console' })).toMatchObject({ enabled: true, exporters: ['console'] });
    const none = tracingConfigFromEnv('generator', { OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' });
    expect(none).toMatchObject({ enabled: false, reason: 'OTEL_TRACES_EXPORTER=none' });
    const disabled = tracingConfigFromEnv('generator', { OTEL_SDK_DISABLED: 'true', OTEL_TRACES_EXPORTER: 'otlp' });
    expect(disabled).toMatchObject({ enabled: false, reason: 'OTEL_SDK_DISABLED=true', exporters: [] });
  });

  it('service name: OTEL_SERVICE_NAME, else service.name of OTEL_RESOURCE_ATTRIBUTES, else the role', () => {
    expect(tracingConfigFromEnv('aligner', {}).serviceName).toBe('aligner');
    expect(tracingConfigFromEnv('aligner', { OTEL_RESOURCE_ATTRIBUTES: 'service.name=mod-align,deployment.environment=prod' })).toMatchObject({
      serviceName: 'mod-align',
      resourceAttributes: { 'service.name': 'mod-align', 'deployment.environment': 'prod' },
    });
    expect(tracingConfigFromEnv('aligner', { OTEL_SERVICE_NAME: 'x', OTEL_RESOURCE_ATTRIBUTES: 'service.name=y' }).serviceName).toBe('x');
  });

  it('headers, timeouts, sampler and batch processor settings; the traces-specific variable wins', () => {
    const c = tracingConfigFromEnv('evaluator', {
      OTEL_EXPORTER_OTLP_HEADERS: 'api-key=abc%3D%3D,x-team=mod',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-team=safety',
      OTEL_EXPORTER_OTLP_TIMEOUT: '3000',
      OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '2000',
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '64',
    });
    expect(c.headers).toEqual({ 'api-key': 'abc==', 'x-team': 'safety' });
    expect(c.timeoutMs).toBe(2000);
    expect(c).toMatchObject({ sampler: 'parentbased_traceidratio', samplerArg: 0.25 });
    expect(c.batch).toEqual({ scheduledDelayMillis: 100, maxQueueSize: 2048, maxExportBatchSize: 64, exportTimeoutMillis: 30000 });
    expect(parseKeyValueList('a=1, b = two ,=bad,nokey,c=50%')).toEqual({ a: '1', b: 'two', c: '50%' });
  });

  it('refuses what it cannot honour: another OTLP encoding, an unknown exporter or sampler, a ratio over 1', () => {
    expect(() => tracingConfigFromEnv('generator', { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' })).toThrow(/only http\/json/);
    expect(() => tracingConfigFromEnv('generator', { OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc' })).toThrow(/OTEL_EXPORTER_OTLP_TRACES_PROTOCOL/);
    expect(() => tracingConfigFromEnv('generator', { OTEL_TRACES_EXPORTER: 'jaeger' })).toThrow(/OTEL_TRACES_EXPORTER/);
    expect(() => tracingConfigFromEnv('generator', { OTEL_TRACES_SAMPLER: 'sometimes' })).toThrow(/OTEL_TRACES_SAMPLER/);
    expect(() => tracingConfigFromEnv('generator', { OTEL_TRACES_SAMPLER_ARG: '2' })).toThrow(/OTEL_TRACES_SAMPLER_ARG/);
    expect(() => tracingConfigFromEnv('generator', { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' })).toThrow(/OTEL_EXPORTER_OTLP_ENDPOINT/);
    // A role validates them at start-up like any other setting.
    expect(() => loadSettings('intake-api', { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' })).toThrow(/OTEL_EXPORTER_OTLP_PROTOCOL/);
  });

  it("every variable is a row of the settings table for every role, and the table's defaults are the reader's", () => {
    const rows = new Map(SETTINGS.map((s) => [s.name, s]));
    for (const name of Object.values(TRACING_ENV)) {
      expect(rows.get(name)?.roles, name).toEqual(['intake-api', 'generator', 'evaluator', 'aligner', 'notifier']);
    }
    const all = loadSettings(undefined, {});
    expect(all.get(TRACING_ENV.protocol)).toBe(TRACING_DEFAULTS.protocol);
    expect(all.get(TRACING_ENV.timeout)).toBe(TRACING_DEFAULTS.timeoutMs);
    expect(all.get(TRACING_ENV.sampler)).toBe(TRACING_DEFAULTS.sampler);
    expect(all.get(TRACING_ENV.samplerArg)).toBe(TRACING_DEFAULTS.samplerArg);
    expect(all.get(TRACING_ENV.scheduleDelay)).toBe(TRACING_DEFAULTS.scheduleDelayMs);
    expect(all.get(TRACING_ENV.maxQueueSize)).toBe(TRACING_DEFAULTS.maxQueueSize);
    expect(all.get(TRACING_ENV.maxExportBatchSize)).toBe(TRACING_DEFAULTS.maxExportBatchSize);
    expect(all.get(TRACING_ENV.exportTimeout)).toBe(TRACING_DEFAULTS.exportTimeoutMs);
    expect(all.get(TRACING_ENV.disabled)).toBe(false);
    for (const sampler of TRACE_SAMPLERS) expect(() => loadSettings(undefined, { OTEL_TRACES_SAMPLER: sampler }), sampler).not.toThrow();
  });
});
