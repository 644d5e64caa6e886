/**
 * Span helpers against a real SDK provider with an in-memory exporter: the W3C carrier in job data, the stage span
 * around a run, and the batch sizes a coalesced call (@libs/safety CallCoalescer) reports to each caller's span.
 */
import { context, propagation, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { StageJobSchema } from '@libs/contracts';
import { CallCoalescer } from '@libs/safety';
import { ATTR, contextFromCarrier, inStageSpan, MAX_TRACESTATE_CHARS, traceCarrier, tracer } from '@libs/telemetry';

describe('span helpers', () => {
  const exporter = new InMemorySpanExporter();
  const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

  beforeAll(() => provider.register());
  beforeEach(() => exporter.reset());
  afterAll(async () => {
    await provider.shutdown();
    trace.disable();
    context.disable();
    propagation.disable();
  });

  it('traceCarrier: nothing without a span; the active span as traceparent, which contextFromCarrier reads back', () => {
    expect(traceCarrier()).toEqual({});
    const span = tracer().startSpan('parent');
    const carrier = context.with(trace.setSpan(context.active(), span), () => traceCarrier());
    span.end();
    const { traceId, spanId } = span.spanContext();
    expect(carrier).toEqual({ traceparent: `00-${traceId}-${spanId}-01` });
    expect(trace.getSpanContext(contextFromCarrier(carrier))).toMatchObject({ traceId, spanId, isRemote: true });
    expect(trace.getSpanContext(contextFromCarrier({ traceparent: 'garbage' }))).toBeUndefined();
  });

  it('the carrier always fits the stage job schema, a tracestate over 512 characters included', () => {
    const traceparent = `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`;
    const job = { id: 'mod_abcd', tenant: 't', prompt: 'p', profile: 'none', policy: 'both' as const, attempt: 0 };
    expect(traceCarrier(contextFromCarrier({ traceparent, tracestate: 'vendor=abc' }))).toEqual({ traceparent, tracestate: 'vendor=abc' });
    // 31 members of 20 characters: a valid W3C member count, longer than the 512 characters the schema takes.
    const long = Array.from({ length: 31 }, (_, i) => `k${i}=${'v'.repeat(16)}`).join(',');
    expect(long.length).toBeGreaterThan(MAX_TRACESTATE_CHARS);
    const carrier = traceCarrier(contextFromCarrier({ traceparent, tracestate: long }));
    expect(carrier.traceparent).toBe(traceparent);
    expect(carrier.tracestate?.length ?? 0).toBeLessThanOrEqual(MAX_TRACESTATE_CHARS);
    expect(() => StageJobSchema.parse({ ...job, ...carrier })).not.toThrow();
    expect(() => StageJobSchema.parse({ ...job, traceparent: 'garbage' })).toThrow();
  });

  it('inStageSpan: a child of the carrier, the run inside it; a failure is recorded with an error status', async () => {
    const parent = { traceparent: `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01` };
    const inner = await inStageSpan('generate', parent, { [ATTR.id]: 'mod_x', [ATTR.tenant]: undefined }, async () => traceCarrier());
    await expect(
      inStageSpan('align', inner, {}, async () => {
        throw new Error('engine closed');
      }),
    ).rejects.toThrow('engine closed');
    const [generate, align] = exporter.getFinishedSpans();
    expect(generate.name).toBe('generate process');
    expect(generate.spanContext().traceId).toBe('1'.repeat(32));
    expect(generate.parentSpanContext?.spanId).toBe('2'.repeat(16));
    expect(generate.attributes).toEqual({ [ATTR.id]: 'mod_x' });
    expect(inner.traceparent).toContain(generate.spanContext().spanId);
    expect(align.parentSpanContext?.spanId).toBe(generate.spanContext().spanId);
    expect(align.status).toMatchObject({ code: 2, message: 'engine closed' });
    expect(align.events.map((e) => e.name)).toEqual(['exception']);
  });

  it("a coalesced call reports its size to every caller's span, which keeps the largest", async () => {
    const reward = new CallCoalescer<number, number>(async (xs) => xs.map((x) => x * 2), 64, ATTR.rewardBatch);
    const a = tracer().startSpan('a');
    const b = tracer().startSpan('b');
    const inSpan = <T>(span: typeof a, fn: () => Promise<T>) => context.with(trace.setSpan(context.active(), span), fn);
    // Same tick: one model call of three inputs for both jobs.
    const [ra, rb] = await Promise.all([inSpan(a, () => reward.call([1])), inSpan(b, () => reward.call([2, 3]))]);
    expect(ra).toEqual([2]);
    expect(rb).toEqual([4, 6]);
    // Later, alone: a smaller call does not lower the recorded maximum.
    await inSpan(a, () => reward.call([4]));
    // An untraced caller is served the same.
    expect(await reward.call([5])).toEqual([10]);
    a.end();
    b.end();
    const spans = Object.fromEntries(exporter.getFinishedSpans().map((s) => [s.name, s.attributes]));
    expect(spans.a).toEqual({ [ATTR.rewardBatch]: 3 });
    expect(spans.b).toEqual({ [ATTR.rewardBatch]: 3 });
  });
});
